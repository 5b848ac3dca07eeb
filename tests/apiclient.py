"""The test client for the API, on the middleware stack production gives it.

DRF's APIClient builds its chain from ``settings.MIDDLEWARE``, the admin's
whole stack; gunicorn serves the API through ``settings.API_MIDDLEWARE``
(core/handlers.py). API tests use this one, so they run what production runs.
"""

from rest_framework.test import APIClient as DRFAPIClient
from rest_framework.test import ForceAuthClientHandler

from core.handlers import APIMiddlewareMixin


class _APIClientHandler(APIMiddlewareMixin, ForceAuthClientHandler):
    pass


class APIClient(DRFAPIClient):
    def __init__(self, enforce_csrf_checks=False, **defaults):
        super().__init__(enforce_csrf_checks, **defaults)
        self.handler = _APIClientHandler(enforce_csrf_checks)
