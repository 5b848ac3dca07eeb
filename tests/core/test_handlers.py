"""The WSGI application gunicorn serves: the API on the short middleware
stack, the admin on the whole one, and the request metrics on both."""

import pytest
from django.conf import settings
from django.test import RequestFactory, override_settings

from core.handlers import APIWSGIHandler
from core.middleware import _REQUESTS, _RESPONSES

# Real requests: Django closes the connection at their end, which a test
# transaction would not survive.
pytestmark = pytest.mark.django_db(transaction=True)


def _call(environ) -> tuple[str, dict, bytes]:
    from config.wsgi import application

    seen = {}

    def start_response(status, headers):
        seen["status"], seen["headers"] = status, headers

    body = b"".join(application(environ, start_response))
    headers = {}
    for name, value in seen["headers"]:
        headers.setdefault(name.lower(), []).append(value.strip())
    return seen["status"], headers, body


def _count(metric, *labels) -> float:
    return metric.labels(*labels)._value.get()


def test_an_api_payment_through_the_served_application(merchant_and_key, token):
    _, secret = merchant_and_key
    before = _count(_REQUESTS, "payments", "http", "POST")
    environ = (
        RequestFactory()
        .post(
            "/v1/payments",
            data={"amount": 1250, "currency": "usd", "source": token.id},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {secret}",
            HTTP_IDEMPOTENCY_KEY="wsgi-1",
        )
        .environ
    )
    status, headers, body = _call(environ)
    assert status.startswith("202"), body
    assert b'"amount":1250' in body
    assert headers["content-length"] == [str(len(body))]
    assert headers["x-content-type-options"] == ["nosniff"]
    assert headers["x-frame-options"] == ["DENY"]
    assert "set-cookie" not in headers  # no session, no CSRF cookie
    assert "vary" not in headers  # nothing varies on a cookie
    assert _count(_REQUESTS, "payments", "http", "POST") == before + 1


def test_an_api_refusal_is_counted_by_status(merchant_and_key):
    before = _count(_RESPONSES, "401", "payments", "GET")
    status, headers, _ = _call(RequestFactory().get("/v1/payments").environ)
    assert status.startswith("401")
    assert "set-cookie" not in headers
    assert _count(_RESPONSES, "401", "payments", "GET") == before + 1


def test_an_unknown_path_is_counted_without_a_view():
    before = _count(_RESPONSES, "404", "<unnamed view>", "GET")
    status, _, _ = _call(RequestFactory().get("/v1/no-such-thing").environ)
    assert status.startswith("404")
    assert _count(_RESPONSES, "404", "<unnamed view>", "GET") == before + 1


def test_the_admin_keeps_sessions_and_csrf():
    status, headers, body = _call(RequestFactory().get("/admin/login/").environ)
    assert status.startswith("200")
    assert any(c.startswith("csrftoken=") for c in headers["set-cookie"])
    assert b"csrfmiddlewaretoken" in body
    # A login form posted without the token is refused: CSRF runs here.
    status, _, _ = _call(
        RequestFactory()
        .post("/admin/login/", {"username": "x", "password": "y"})
        .environ
    )
    assert status.startswith("403")


def test_building_the_api_stack_puts_the_whole_one_back():
    whole = list(settings.MIDDLEWARE)
    APIWSGIHandler()
    assert list(settings.MIDDLEWARE) == whole
    with override_settings(API_MIDDLEWARE=["core.no_such_module.Middleware"]):
        with pytest.raises(ImportError):
            APIWSGIHandler()
        assert list(settings.MIDDLEWARE) == whole


def test_each_path_gets_its_stack():
    from config.wsgi import application

    def view_middleware(handler) -> set[str]:
        return {type(m.__self__).__name__ for m in handler._view_middleware}

    assert application.handler_for("/v1/payments") is application.api
    assert application.handler_for("/metrics") is application.api
    assert application.handler_for("/admin/") is application.browser
    assert "CsrfViewMiddleware" in view_middleware(application.browser)
    assert "CsrfViewMiddleware" not in view_middleware(application.api)
