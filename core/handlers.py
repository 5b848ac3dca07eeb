"""Two middleware stacks: a short one for the API, Django's whole one for the admin.

Sessions, CSRF, authentication and messages serve people in a browser, which
here means the admin; API clients authenticate with a key on every request
and DRF exempts its views from CSRF. Run on every API request they would
cost CPU on the hot path for nothing.
``settings.MIDDLEWARE`` stays the whole stack (the admin's system checks read
it); ``settings.API_MIDDLEWARE`` is the short one, and ``SurgeWSGIApplication``
sends each request to one or the other by its path.
"""

import threading

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler

_loading = threading.Lock()


class APIMiddlewareMixin:
    """For a Django handler: build the chain from ``settings.API_MIDDLEWARE``.

    Django's loader reads ``settings.MIDDLEWARE`` and takes no list, so the
    setting is swapped while the chain is built (once, when the handler is
    made), under a lock, and put back.
    """

    def load_middleware(self, is_async=False):
        with _loading:
            whole = settings.MIDDLEWARE
            settings.MIDDLEWARE = settings.API_MIDDLEWARE
            try:
                super().load_middleware(is_async)
            finally:
                settings.MIDDLEWARE = whole


class APIWSGIHandler(APIMiddlewareMixin, WSGIHandler):
    pass


class SurgeWSGIApplication:
    """Paths under ``settings.BROWSER_PATHS`` get the whole middleware stack;
    everything else (the API, /metrics, the schema) the short one."""

    def __init__(self):
        self.api = APIWSGIHandler()
        self.browser = WSGIHandler()
        self.browser_paths = tuple(settings.BROWSER_PATHS)

    def handler_for(self, path: str) -> WSGIHandler:
        return self.browser if path.startswith(self.browser_paths) else self.api

    def __call__(self, environ, start_response):
        return self.handler_for(environ.get("PATH_INFO", ""))(environ, start_response)
