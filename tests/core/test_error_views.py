"""Django's error views on the API's paths answer the error object; the
admin's keep Django's pages (core.api: handler400, handler404, handler500)."""

import json

import pytest
from django.test import RequestFactory, override_settings

from core.api import server_error
from tests.apiclient import APIClient

pytestmark = pytest.mark.django_db


def test_a_path_that_matches_no_route_is_the_404_error_object():
    for path in ("/v1/nope", "/v1/payments/pay_%00x", "/v1/payments/pay-1/refunds"):
        resp = APIClient().get(path)
        assert resp.status_code == 404, path
        assert resp["Content-Type"] == "application/json"
        assert resp.json()["error"]["code"] == "resource_missing"


@override_settings(ALLOWED_HOSTS=["pay.example.com"])
def test_a_refused_host_is_the_400_error_object_on_the_api_and_a_page_elsewhere():
    resp = APIClient().get("/v1/balance", HTTP_HOST="evil.example.com")
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "invalid_request"
    page = APIClient().get("/admin/", HTTP_HOST="evil.example.com")
    assert page.status_code == 400 and "json" not in page["Content-Type"]


def test_a_crash_on_the_api_is_the_500_error_object():
    resp = server_error(RequestFactory().get("/v1/payments"))
    assert resp.status_code == 500
    assert json.loads(resp.content)["error"]["code"] == "api_error"
    page = server_error(RequestFactory().get("/admin/"))
    assert page.status_code == 500 and "json" not in page["Content-Type"]
