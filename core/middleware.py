"""Middleware that costs nothing on API requests."""

import time

from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.messages.storage import default_storage
from django.utils.functional import SimpleLazyObject, empty
from django_prometheus.conf import PROMETHEUS_LATENCY_BUCKETS
from prometheus_client import Counter, Histogram


class LazyMessageMiddleware(MessageMiddleware):
    """Django's MessageMiddleware, with the message storage made on first use.

    The stock one builds it on every request (a cookie signer and two
    backends), a cost every API request paid for messages only the admin
    ever shows.
    """

    def process_request(self, request):
        request._messages = SimpleLazyObject(lambda: default_storage(request))

    def process_response(self, request, response):
        messages = getattr(request, "_messages", None)
        if isinstance(messages, SimpleLazyObject) and messages._wrapped is empty:
            return response  # never used: nothing to store
        return super().process_response(request, response)


# The request series django-prometheus' middleware pair kept that the
# dashboards read, under the same names and labels. That pair updated twelve
# series per request (four of them histograms), each through ``labels()``,
# which looks the child series up again, under a lock, on every call. These
# three look each label combination's children up once and keep them.
_REQUESTS = Counter(
    "django_http_requests_total_by_view_transport_method",
    "Requests by view, transport and method.",
    ["view", "transport", "method"],
)
_RESPONSES = Counter(
    "django_http_responses_total_by_status_view_method",
    "Responses by status, view and method.",
    ["status", "view", "method"],
)
_LATENCY = Histogram(
    "django_http_requests_latency_seconds_by_view_method",
    "Seconds spent in the middleware and the view, by view and method.",
    ["view", "method"],
    buckets=PROMETHEUS_LATENCY_BUCKETS,
)
_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "OPTIONS", "CONNECT", "PATCH")
)


class RequestMetricsMiddleware:
    """Count every request and time it, by the view that answered it.

    Outermost in both middleware stacks, so its time includes theirs. An
    exception in a view reaches it as the 500 response Django made of it.
    """

    def __init__(self, get_response):
        self.get_response = get_response
        self._children: dict[tuple, tuple] = {}

    def __call__(self, request):
        start = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - start
        match = getattr(request, "resolver_match", None)
        view = (match.view_name if match else None) or "<unnamed view>"
        method = request.method if request.method in _METHODS else "<invalid method>"
        key = (view, method, request.is_secure(), response.status_code)
        children = self._children.get(key)
        if children is None:
            transport = "https" if key[2] else "http"
            children = self._children[key] = (
                _REQUESTS.labels(view, transport, method),
                _RESPONSES.labels(str(response.status_code), view, method),
                _LATENCY.labels(view, method),
            )
        requests, responses, latency = children
        requests.inc()
        responses.inc()
        latency.observe(elapsed)
        return response
