import gc
import os

import django

from core import tracing
from core.handlers import SurgeWSGIApplication

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)
tracing.configure()  # only if OTEL_* asks; before the middleware is built
# The API on a short middleware stack, the admin on the whole one.
application = SurgeWSGIApplication()
# What is loaded now lives as long as the process: keep it out of the cyclic
# collector's full passes, which scanned all of it every time with every
# request thread of the process stopped: a pause in every request in flight.
gc.freeze()
