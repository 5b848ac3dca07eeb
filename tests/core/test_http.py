"""The request path's shortcuts: lazy message storage, JSON-only negotiation."""

import pytest
from django.contrib.auth.models import User

from payments.models import ApiKey

pytestmark = pytest.mark.django_db


def test_admin_messages_still_reach_the_next_page(client, merchant):
    user = User.objects.create_superuser("ops", "ops@example.com", "pw-long-enough")
    client.force_login(user)
    response = client.post(
        "/admin/payments/merchant/",
        {"action": "revoke_keys", "_selected_action": [merchant.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Keys revoked." in response.content.decode()
    assert not ApiKey.objects.filter(merchant=merchant, revoked_at=None).exists()


def test_an_api_request_stores_no_messages(api):
    response = api.get("/v1/payments")
    assert response.status_code == 200
    assert "messages" not in response.cookies


def test_the_api_answers_json_whatever_the_accept_header(api):
    for accept in ("text/html", "application/xml", "*/*", "application/json"):
        response = api.get("/v1/payments", HTTP_ACCEPT=accept)
        assert response.status_code == 200, accept
        assert response["Content-Type"] == "application/json"
        assert response.json()["object"] == "list"


def test_the_schema_still_negotiates_its_format(client):
    as_json = client.get("/v1/schema?format=json")
    assert as_json["Content-Type"].startswith("application/vnd.oai.openapi+json")
    assert as_json.json()["info"]["title"] == "Surge API"
    as_yaml = client.get("/v1/schema")
    assert as_yaml["Content-Type"].startswith("application/vnd.oai.openapi")
    assert as_yaml.content.startswith(b"openapi:")
