"""The product's settings plus the bench's own routes (``bench.urls``).

The benchmark's stack runs with ``DJANGO_SETTINGS_MODULE=bench.settings`` so
the bare-INSERT baseline endpoint exists only there, never in the product.
"""

from django.core.exceptions import ImproperlyConfigured

from config.settings import *  # noqa: F403
from config.settings import PRODUCTION

if PRODUCTION:
    raise ImproperlyConfigured(
        "bench.settings mounts an unauthenticated endpoint: never in production."
    )

ROOT_URLCONF = "bench.urls"
