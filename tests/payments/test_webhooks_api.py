"""The webhook endpoints API, the admin pages and actions, the command."""

import json
import time

import pytest
from django.contrib.auth.models import User

from payments.models import AuditLog, IdempotencyKey, WebhookDelivery, WebhookEndpoint
from payments.services import webhooks
from payments.services.keys import api_key_create
from tests.factories import MerchantFactory
from tests.payments.webhook_helpers import emit, endpoint_for, make_payment, run

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("webhook_settings", "in_test_transaction"),
]


# --- API ---------------------------------------------------------------------


def create(api, body, key="we-1"):
    return api.post(
        "/v1/webhook_endpoints", data=body, format="json", HTTP_IDEMPOTENCY_KEY=key
    )


def test_create_returns_the_secret_once_and_replays_it_by_key(api, receiver):
    resp = create(api, {"url": receiver.url, "enabled_events": ["payment.settled"]})
    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert body["id"].startswith("we_") and body["secret"].startswith("whsec_")
    assert body["enabled_events"] == ["payment.settled"] and body["status"] == "active"
    replay = create(api, {"url": receiver.url, "enabled_events": ["payment.settled"]})
    assert replay.status_code == 201 and replay.json() == body
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert WebhookEndpoint.objects.count() == 1
    stored = json.dumps(list(IdempotencyKey.objects.values_list("response_body")))
    assert body["secret"] not in stored
    listed = api.get("/v1/webhook_endpoints")
    detail = api.get(f"/v1/webhook_endpoints/{body['id']}")
    assert listed.status_code == detail.status_code == 200
    assert [e["id"] for e in listed.json()["data"]] == [body["id"]]
    for resp in (listed, detail):
        assert body["secret"] not in resp.content.decode()
        assert "secret" not in resp.content.decode()


def test_delete_disables_the_endpoint(api, receiver):
    endpoint_id = create(api, {"url": receiver.url}).json()["id"]
    resp = api.delete(f"/v1/webhook_endpoints/{endpoint_id}")
    assert resp.status_code == 200 and resp.json()["status"] == "disabled"
    assert api.delete(f"/v1/webhook_endpoints/{endpoint_id}").status_code == 200
    assert WebhookEndpoint.objects.get().status == "disabled"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "url"),
        ({"url": 42}, "url"),
        ({"url": ""}, "url"),
        ({"url": "ftp://example.com/hook"}, "url"),
        ({"url": "javascript:alert(1)"}, "url"),
        ({"url": "https://user:pw@example.com/hook"}, "url"),
        ({"url": "https://example.com:99999/hook"}, "url"),
        ({"url": "https://exa mple.com/hook"}, "url"),
        ({"url": "https://example.com/" + "a" * 2100}, "url"),
        ({"url": "https://"}, "url"),
        ({"url": "https://example.com/4242424242424242"}, "url"),
        (
            {"url": "https://example.com", "enabled_events": "payment.settled"},
            "enabled_events",
        ),
        (
            {"url": "https://example.com", "enabled_events": ["payment.nope"]},
            "enabled_events",
        ),
        ({"url": "https://example.com", "enabled_events": [1]}, "enabled_events"),
        ({"url": "https://example.com", "secret": "whsec_mine"}, "secret"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(api, body, param):
    resp = create(api, body)
    assert resp.status_code == 400, resp.content
    assert resp.json()["error"]["param"] == param
    assert not WebhookEndpoint.objects.exists()
    assert not IdempotencyKey.objects.exists()
    assert "4242424242424242" not in resp.content.decode()


def test_http_is_refused_unless_allowed(api, settings):
    settings.WEBHOOK_ALLOW_HTTP = False
    settings.DEBUG = False
    resp = create(api, {"url": "http://example.com/hook"})
    assert resp.status_code == 400 and "https" in resp.json()["error"]["message"]
    assert create(api, {"url": "https://example.com/hook"}, key="k2").status_code == 201


def test_missing_idempotency_key_is_a_400(api):
    resp = api.post(
        "/v1/webhook_endpoints", data={"url": "https://example.com"}, format="json"
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "Idempotency-Key"


def test_endpoint_count_is_bounded(api, settings):
    settings.WEBHOOK_MAX_ENDPOINTS = 2
    for i in range(2):
        assert (
            create(api, {"url": "https://example.com"}, key=f"k{i}").status_code == 201
        )
    resp = create(api, {"url": "https://example.com"}, key="k3")
    assert (
        resp.status_code == 400 and resp.json()["error"]["code"] == "too_many_endpoints"
    )


def test_another_merchants_endpoint_is_a_404(api, client_for, receiver):
    other = MerchantFactory()
    _, other_secret = api_key_create(merchant=other)
    theirs = create(client_for(other_secret), {"url": receiver.url}).json()["id"]
    for method, path in [
        ("get", f"/v1/webhook_endpoints/{theirs}"),
        ("delete", f"/v1/webhook_endpoints/{theirs}"),
        ("get", f"/v1/webhook_endpoints/{theirs}/deliveries"),
        ("get", "/v1/webhook_endpoints/we_nope"),
    ]:
        resp = getattr(api, method)(path)
        assert resp.status_code == 404, path
        assert resp.json()["error"]["code"] == "resource_missing"
    assert WebhookEndpoint.objects.get(pk=theirs).status == "active"
    assert api.get("/v1/webhook_endpoints").json()["data"] == []


def test_deliveries_are_listed_newest_first_with_a_cursor(api, merchant, receiver):
    endpoint_id = create(api, {"url": receiver.url}).json()["id"]
    payment = make_payment(merchant)
    emit(payment, "payment.created", "payment.validated", "payment.processing")
    run()
    page = api.get(f"/v1/webhook_endpoints/{endpoint_id}/deliveries?limit=2").json()
    assert page["has_more"] is True
    assert [d["event_type"] for d in page["data"]] == [
        "payment.processing",
        "payment.validated",
    ]
    first = page["data"][0]
    assert first["status"] == "succeeded" and first["attempts"] == 1
    assert first["last_status_code"] == 200 and first["next_attempt_at"] is None
    rest = api.get(
        f"/v1/webhook_endpoints/{endpoint_id}/deliveries"
        f"?limit=2&starting_after={page['data'][1]['id']}"
    ).json()
    assert [d["event_type"] for d in rest["data"]] == ["payment.created"]
    assert rest["has_more"] is False
    bad = api.get(f"/v1/webhook_endpoints/{endpoint_id}/deliveries?limit=0")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit"
    missing = api.get(
        f"/v1/webhook_endpoints/{endpoint_id}/deliveries?starting_after=whd_x"
    )
    assert missing.status_code == 400
    assert missing.json()["error"]["param"] == "starting_after"


def test_schema_documents_the_webhook_endpoints(api):
    from django.test import Client

    schema = Client().get("/v1/schema?format=json").json()
    assert "/v1/webhook_endpoints" in schema["paths"]
    assert "/v1/webhook_endpoints/{endpoint_id}/deliveries" in schema["paths"]


# --- Admin -------------------------------------------------------------------


@pytest.fixture
def admin_client(client):
    # No password: force_login needs none, and hashing one costs ~1 s.
    user = User.objects.create(username="ops", is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


def test_admin_never_shows_the_secret(admin_client, merchant, receiver):
    endpoint, secret = endpoint_for(merchant, receiver)
    for path in (
        "/admin/payments/webhookendpoint/",
        f"/admin/payments/webhookendpoint/{endpoint.pk}/change/",
    ):
        resp = admin_client.get(path)
        page = resp.content.decode()
        assert resp.status_code == 200 and endpoint.pk in page
        assert secret not in page and "Secret" not in page


def test_admin_retry_now_gives_a_failed_delivery_one_more_attempt(
    admin_client, merchant, receiver
):
    endpoint_for(merchant, receiver)
    receiver.codes = [500, 500, 500]
    emit(make_payment(merchant), "payment.created")
    run()
    webhooks.deliver_due()
    webhooks.deliver_due()
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "failed"
    resp = admin_client.post(
        "/admin/payments/webhookdelivery/",
        {"action": "retry_now", "_selected_action": [delivery.pk]},
    )
    assert resp.status_code == 302
    delivery.refresh_from_db()
    assert delivery.status == "pending"
    log = AuditLog.objects.get(action="webhook_delivery.retry")
    assert (log.actor, log.object_id) == ("ops", delivery.pk)
    assert webhooks.deliver_due() == {"succeeded": 1}
    page = admin_client.get(
        f"/admin/payments/webhookdelivery/{delivery.pk}/change/"
    ).content.decode()
    assert "Succeeded" in page


def test_deliveries_are_counted_by_outcome(merchant, receiver):
    from django.test import Client

    endpoint_for(merchant, receiver)
    emit(make_payment(merchant), "payment.created")
    run()
    text = Client().get("/metrics").content.decode()
    assert 'surge_webhook_deliveries_total{outcome="succeeded"}' in text


def test_command_runs_dispatch_and_delivery_once(merchant, receiver):
    from io import StringIO

    from django.core.management import call_command

    endpoint_for(merchant, receiver)
    emit(make_payment(merchant), "payment.created")
    time.sleep(0.003)
    out = StringIO()
    call_command("deliver_webhooks", stdout=out)
    assert "succeeded=1" in out.getvalue() and len(receiver.requests) == 1
