"""Webhook endpoints over time: secret rotation, PATCH, the events API and
resend, auto-disable and re-enable, the receiver's answer kept. A real
receiver on loopback verifies every request with ``standardwebhooks``."""

import logging
import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from payments.models import Event, WebhookDelivery, WebhookEndpoint
from payments.services import webhooks
from payments.services.keys import api_key_create
from tests.factories import MerchantFactory
from tests.payments.webhook_helpers import (
    Receiver,
    emit,
    endpoint_for,
    make_payment,
    run,
)

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("webhook_settings", "in_test_transaction"),
]


def create(api, receiver, key="we-1", **body):
    resp = api.post(
        "/v1/webhook_endpoints",
        data={"url": receiver.url, **body},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )
    assert resp.status_code == 201, resp.content
    return resp.json()


def rotate(api, endpoint_id, key="rot-1", **body):
    return api.post(
        f"/v1/webhook_endpoints/{endpoint_id}/rotate_secret",
        data=body,
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )


def verifies(secret, headers, body) -> bool:
    try:
        Webhook(secret).verify(body, headers)
    except WebhookVerificationError:
        return False
    return True


# --- Secret rotation -----------------------------------------------------------


def test_during_the_overlap_both_secrets_verify_and_after_it_only_the_new(
    api, merchant, receiver
):
    created = create(api, receiver)
    old = created["secret"]
    resp = rotate(api, created["id"], expires_in=3600)
    assert resp.status_code == 200, resp.content
    new = resp.json()["secret"]
    assert new.startswith("whsec_") and new != old
    assert resp.json()["rotation_ends_at"] is not None

    emit(make_payment(merchant), "payment.created")
    assert run()["succeeded"] == 1
    headers, body = receiver.requests[-1]
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert verifies(old, headers, body)  # a receiver not yet updated
    assert verifies(new, headers, body)  # a receiver already updated

    # The overlap ends (the clock moved past it).
    WebhookEndpoint.objects.filter(pk=created["id"]).update(
        previous_secret_expires_at=timezone.now() - timedelta(seconds=1)
    )
    emit(make_payment(merchant), "payment.created")
    assert run()["succeeded"] == 1
    headers, body = receiver.requests[-1]
    assert len(headers["webhook-signature"].split(" ")) == 1
    assert verifies(new, headers, body)
    assert not verifies(old, headers, body)
    detail = api.get(f"/v1/webhook_endpoints/{created['id']}").json()
    assert detail["rotation_ends_at"] is None


def test_rotation_with_no_overlap_stops_the_old_secret_at_once(api, merchant, receiver):
    created = create(api, receiver)
    new = rotate(api, created["id"], expires_in=0).json()["secret"]
    emit(make_payment(merchant), "payment.created")
    run()
    headers, body = receiver.requests[-1]
    assert verifies(new, headers, body)
    assert not verifies(created["secret"], headers, body)


def test_the_new_secret_is_shown_once_and_sealed(api, receiver):
    created = create(api, receiver)
    first = rotate(api, created["id"])
    assert first.status_code == 200
    new = first.json()["secret"]
    replay = rotate(api, created["id"])  # same Idempotency-Key: not rotated twice
    assert replay.json()["secret"] == new
    assert replay.headers["Idempotent-Replayed"] == "true"
    for page in (
        api.get(f"/v1/webhook_endpoints/{created['id']}"),
        api.get("/v1/webhook_endpoints"),
    ):
        assert new not in page.content.decode()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT secret, previous_secret FROM payments_webhookendpoint WHERE id = %s",
            [created["id"]],
        )
        sealed, previous = cursor.fetchone()
    assert new.encode() not in bytes(sealed)
    assert created["secret"].encode() not in bytes(previous)
    endpoint = WebhookEndpoint.objects.get()
    assert (endpoint.secret, endpoint.previous_secret) == (new, created["secret"])


@pytest.mark.parametrize("expires_in", [-1, 7 * 86400 + 1, "soon", 1.5])
def test_a_bad_overlap_is_a_400_and_rotates_nothing(api, receiver, expires_in):
    created = create(api, receiver)
    resp = rotate(api, created["id"], expires_in=expires_in)
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "expires_in"
    assert WebhookEndpoint.objects.get().secret == created["secret"]


def test_the_longest_overlap_is_seven_days(api, receiver):
    created = create(api, receiver)
    assert rotate(api, created["id"], expires_in=7 * 86400).status_code == 200
    endpoint = WebhookEndpoint.objects.get()
    left = endpoint.previous_secret_expires_at - timezone.now()
    assert timedelta(days=7) - timedelta(minutes=1) < left <= timedelta(days=7)


# --- PATCH ---------------------------------------------------------------------


def test_patch_changes_url_events_and_description(api, merchant, receiver):
    created = create(api, receiver)
    other = Receiver()
    try:
        resp = api.patch(
            f"/v1/webhook_endpoints/{created['id']}",
            data={
                "url": other.url,
                "enabled_events": ["payment.settled"],
                "description": "orders service",
            },
            format="json",
        )
        assert resp.status_code == 200, resp.content
        body = resp.json()
        assert body["url"] == other.url and body["description"] == "orders service"
        assert body["enabled_events"] == ["payment.settled"]
        emit(make_payment(merchant), "payment.created", "payment.settled")
        run()
        assert not receiver.requests
        (event,) = other.events(created["secret"])
        assert event["type"] == "payment.settled"
    finally:
        other.close()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"url": "ftp://example.com"}, "url"),
        ({"url": "https://10.0.0.1/hook"}, "url"),
        ({"enabled_events": ["payment.nope"]}, "enabled_events"),
        ({"description": "x" * 501}, "description"),
        ({"status": "paused"}, "status"),
        ({"secret": "whsec_mine"}, "secret"),
    ],
)
def test_a_bad_patch_is_a_400_and_changes_nothing(api, receiver, settings, body, param):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    created = create(api, receiver, description="before")
    resp = api.patch(f"/v1/webhook_endpoints/{created['id']}", data=body, format="json")
    assert resp.status_code == 400, resp.content
    assert resp.json()["error"]["param"] == param
    endpoint = WebhookEndpoint.objects.get()
    assert (endpoint.url, endpoint.description, endpoint.enabled_events) == (
        receiver.url,
        "before",
        [],
    )


def test_another_merchants_objects_are_404(api, client_for, receiver):
    other = MerchantFactory()
    _, key = api_key_create(merchant=other)
    theirs = create(client_for(key), receiver)["id"]
    emit(make_payment(other), "payment.created")
    their_event = Event.objects.get(merchant_id=other.pk).pk
    mine = create(api, receiver, key="mine")["id"]
    for method, path, body in [
        ("patch", f"/v1/webhook_endpoints/{theirs}", {"description": "x"}),
        ("post", f"/v1/webhook_endpoints/{theirs}/rotate_secret", {}),
        ("post", f"/v1/webhook_endpoints/{theirs}/resend", {"event": their_event}),
        ("get", f"/v1/events/{their_event}", None),
        ("post", f"/v1/webhook_endpoints/{mine}/resend", {"event": their_event}),
    ]:
        resp = getattr(api, method)(
            path, data=body, format="json", HTTP_IDEMPOTENCY_KEY="x"
        )
        assert resp.status_code == 404, (path, resp.content)
        assert resp.json()["error"]["code"] == "resource_missing"
    assert WebhookEndpoint.objects.get(pk=theirs).description == ""
    assert not WebhookDelivery.objects.exists()
    assert api.get("/v1/events").json()["data"] == []


# --- Events API ------------------------------------------------------------------


def test_events_are_listed_newest_first_with_a_cursor_and_filters(api, merchant):
    payment = make_payment(merchant)
    emit(payment, "payment.created", "payment.validated", "payment.processing")
    emit(make_payment(MerchantFactory()), "payment.created")  # not mine
    page = api.get("/v1/events?limit=2").json()
    assert [e["type"] for e in page["data"]] == [
        "payment.processing",
        "payment.validated",
    ]
    assert page["has_more"] is True
    first = page["data"][0]
    assert first["object"] == "event" and first["id"].startswith("evt_")
    assert first["data"]["object"]["id"] == payment.pk
    rest = api.get(f"/v1/events?limit=2&starting_after={page['data'][1]['id']}")
    assert [e["type"] for e in rest.json()["data"]] == ["payment.created"]
    assert rest.json()["has_more"] is False
    typed = api.get("/v1/events?type=payment.validated").json()["data"]
    assert [e["type"] for e in typed] == ["payment.validated"]
    detail = api.get(f"/v1/events/{first['id']}")
    assert detail.status_code == 200 and detail.json() == first


def test_events_filter_by_creation_time(api, merchant):
    payment = make_payment(merchant)
    two_hours_ago = timezone.now() - timedelta(hours=2)
    old_id = webhooks.id_at("evt", int(two_hours_ago.timestamp() * 1000))
    with connection.cursor() as cursor:  # as made two hours ago: id and time
        # (raw: the model stamps created_at, and events are never updated)
        cursor.execute(
            "INSERT INTO payments_event (id, type, merchant_id, payment_id, data, "
            "created_at) VALUES (%s, 'payment.created', %s, %s, '{}', %s)",
            [old_id, merchant.pk, payment.pk, two_hours_ago],
        )
    old = Event.objects.get(pk=old_id)
    emit(payment, "payment.validated")
    now = int(time.time())
    hour_ago = now - 3600
    recent = api.get(f"/v1/events?created[gte]={hour_ago}").json()["data"]
    assert [e["type"] for e in recent] == ["payment.validated"]
    older = api.get(f"/v1/events?created[lt]={hour_ago}").json()["data"]
    assert [e["id"] for e in older] == [old.pk]
    both = api.get(f"/v1/events?created[gte]={now - 3 * 3600}&created[lt]={now + 5}")
    assert len(both.json()["data"]) == 2


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("limit=0", "limit"),
        ("type=payment.nope", "type"),
        ("created[gte]=yesterday", "created[gte]"),
        ("created[lt]=-5", "created[lt]"),
        ("starting_after=evt_nope", "starting_after"),
        ("colour=red", "colour"),
    ],
)
def test_bad_event_queries_are_400_naming_the_parameter(api, query, param):
    resp = api.get(f"/v1/events?{query}")
    assert resp.status_code == 400, resp.content
    assert resp.json()["error"]["param"] == param


def test_an_unknown_event_is_404(api):
    resp = api.get("/v1/events/evt_nope")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "resource_missing"


# --- Resend ----------------------------------------------------------------------


def resend(api, endpoint_id, body):
    return api.post(
        f"/v1/webhook_endpoints/{endpoint_id}/resend", data=body, format="json"
    )


def test_resend_delivers_an_event_again_with_the_same_webhook_id(
    api, merchant, receiver
):
    created = create(api, receiver)
    emit(make_payment(merchant), "payment.created")
    run()
    ((first_headers, first_body),) = receiver.requests
    event_id = first_headers["webhook-id"]
    resp = resend(api, created["id"], {"event": event_id})
    assert resp.status_code == 202, resp.content
    assert resp.json()["events"] == 1
    assert webhooks.deliver_due() == {"succeeded": 1}
    headers, body = receiver.requests[1]
    assert headers["webhook-id"] == event_id
    again = Webhook(created["secret"]).verify(body, headers)
    assert again == Webhook(created["secret"]).verify(first_body, first_headers)
    delivery = WebhookDelivery.objects.get()  # still one per (endpoint, event)
    assert (delivery.status, delivery.attempts) == ("succeeded", 1)


def test_resend_by_time_range_includes_events_the_endpoint_never_had(
    api, merchant, receiver
):
    payment = make_payment(merchant)
    emit(payment, "payment.created")  # before the endpoint existed
    created = create(api, receiver, enabled_events=["payment.created"])
    emit(payment, "payment.created", "payment.validated")
    run()
    assert len(receiver.requests) == 1
    now = int(time.time())
    resp = resend(api, created["id"], {"created": {"gte": now - 60, "lt": now + 60}})
    assert resp.status_code == 202 and resp.json()["events"] == 2  # not validated
    webhooks.deliver_due()
    ids = [h["webhook-id"] for h, _ in receiver.requests]
    assert len(ids) == 3 and len(set(ids)) == 2
    assert {e["type"] for e in receiver.events(created["secret"])} == {
        "payment.created"
    }


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"event": "evt_x", "created": {"gte": 1, "lt": 2}},
        {"created": {"gte": 10, "lt": 5}},
        {"created": {"gte": 10}},
        {"created": "today"},
    ],
)
def test_a_bad_resend_is_a_400_and_sends_nothing(api, receiver, body):
    created = create(api, receiver)
    resp = resend(api, created["id"], body)
    assert resp.status_code == 400, resp.content
    assert not WebhookDelivery.objects.exists()


def test_resend_to_a_disabled_endpoint_is_a_409(api, merchant, receiver):
    created = create(api, receiver)
    emit(make_payment(merchant), "payment.created")
    api.delete(f"/v1/webhook_endpoints/{created['id']}")
    resp = resend(api, created["id"], {"event": Event.objects.get().pk})
    assert resp.status_code == 409
    assert resp.json()["error"]["code"] == "endpoint_disabled"


def test_resend_of_an_event_type_the_endpoint_does_not_take_is_a_400(
    api, merchant, receiver
):
    created = create(api, receiver, enabled_events=["payment.settled"])
    emit(make_payment(merchant), "payment.created")
    resp = resend(api, created["id"], {"event": Event.objects.get().pk})
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "event_type_invalid"


# --- Auto-disable and re-enable ----------------------------------------------------


def move_failing_start(endpoint_id, *, ago: timedelta) -> None:
    """Move the clock: the run of failures began ``ago``."""
    WebhookEndpoint.objects.filter(pk=endpoint_id).update(
        failing_since=timezone.now() - ago
    )


def test_an_endpoint_failing_for_the_window_is_disabled_and_resumes_when_enabled(
    api, merchant, receiver, settings
):
    settings.WEBHOOK_RETRY_SCHEDULE = [0, 0, 0, 0, 0, 0]
    assert settings.WEBHOOK_DISABLE_AFTER == 3 * 86400  # the default
    created = create(api, receiver)
    endpoint_id = created["id"]
    receiver.codes = [500] * 4
    payment = make_payment(merchant)
    emit(payment, "payment.created")
    assert run()["retrying"] == 1
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.failing_since is not None and endpoint.status == "active"

    # Failing for a bit less than the window: still active.
    move_failing_start(endpoint_id, ago=timedelta(days=3) - timedelta(minutes=1))
    assert webhooks.deliver_due() == {"retrying": 1}
    assert WebhookEndpoint.objects.get().status == "active"

    # The clock moves past the window: the next failure disables it.
    move_failing_start(endpoint_id, ago=timedelta(days=3, minutes=1))
    assert webhooks.deliver_due() == {"retrying": 1}
    endpoint = WebhookEndpoint.objects.get()
    assert (endpoint.status, endpoint.disabled_cause) == ("disabled", "failing")
    assert "every delivery has failed since" in endpoint.disabled_reason
    assert "3 days" in endpoint.disabled_reason
    stopped = WebhookDelivery.objects.get()
    assert (stopped.status, stopped.attempts) == ("paused", 3)
    assert stopped.next_attempt_at is None

    # Its deliveries stop; events made meanwhile wait, nothing is sent.
    emit(payment, "payment.validated")
    sent = len(receiver.requests)
    assert run() == {"events": 0, "deliveries": 0}
    assert len(receiver.requests) == sent == 3
    shown = api.get(f"/v1/webhook_endpoints/{endpoint_id}").json()
    assert shown["status"] == "disabled"
    assert shown["disabled_reason"] == endpoint.disabled_reason
    listed = api.get(f"/v1/webhook_endpoints/{endpoint_id}/deliveries").json()
    assert [d["status"] for d in listed["data"]] == ["paused"]

    # Re-enabled (the receiver is fixed): it resumes where it stopped.
    receiver.codes = []
    resp = api.patch(
        f"/v1/webhook_endpoints/{endpoint_id}", data={"status": "active"}, format="json"
    )
    assert resp.status_code == 200, resp.content
    assert resp.json()["status"] == "active" and resp.json()["disabled_reason"] is None
    result = run()
    assert (result["deliveries"], result["succeeded"]) == (1, 2)
    received = receiver.events(created["secret"])[sent:]
    assert [e["type"] for e in received] == ["payment.created", "payment.validated"]
    resumed = WebhookDelivery.objects.get(event_type="payment.created")
    assert (resumed.status, resumed.attempts) == ("succeeded", 4)
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.failing_since is None and endpoint.disabled_reason == ""


def test_a_delivery_retried_while_disabled_for_failing_waits_with_the_others(
    merchant, receiver
):
    endpoint, _ = endpoint_for(merchant, receiver)
    receiver.codes = [500, 500, 500]
    emit(make_payment(merchant), "payment.created")
    run()
    webhooks.deliver_due()
    assert webhooks.deliver_due() == {"failed": 1}  # three attempts
    move_failing_start(endpoint.pk, ago=timedelta(days=4))
    assert webhooks.webhook_endpoints_disable_failing(endpoint_ids=[endpoint.pk]) == [
        endpoint.pk
    ]
    delivery = WebhookDelivery.objects.get()
    assert webhooks.webhook_delivery_retry(delivery_ids=[delivery.pk]) == 1
    assert webhooks.deliver_due() == {"paused": 1}  # not attempted
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("paused", 3)
    assert len(receiver.requests) == 3
    webhooks.webhook_endpoint_enable(endpoint=endpoint)
    assert webhooks.deliver_due() == {"succeeded": 1}
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 4)


def test_a_success_ends_the_run_of_failures(merchant, receiver):
    endpoint, _ = endpoint_for(merchant, receiver)
    receiver.codes = [500]
    emit(make_payment(merchant), "payment.created")
    run()
    move_failing_start(endpoint.pk, ago=timedelta(days=2))
    assert webhooks.deliver_due() == {"succeeded": 1}
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None and endpoint.status == "active"


def test_auto_disable_can_be_turned_off(merchant, receiver, settings):
    settings.WEBHOOK_DISABLE_AFTER = 0
    endpoint, _ = endpoint_for(merchant, receiver)
    receiver.codes = [500, 500]
    emit(make_payment(merchant), "payment.created")
    run()
    move_failing_start(endpoint.pk, ago=timedelta(days=30))
    webhooks.deliver_due()
    endpoint.refresh_from_db()
    assert endpoint.status == "active"


def test_re_enabling_an_endpoint_disabled_on_request_starts_with_new_events(
    api, merchant, receiver
):
    created = create(api, receiver)
    payment = make_payment(merchant)
    api.delete(f"/v1/webhook_endpoints/{created['id']}")
    shown = api.get(f"/v1/webhook_endpoints/{created['id']}").json()
    assert shown["disabled_reason"] == "Disabled through the API."
    emit(payment, "payment.created")  # while disabled: never sent
    time.sleep(0.003)
    resp = api.patch(
        f"/v1/webhook_endpoints/{created['id']}",
        data={"status": "active"},
        format="json",
    )
    assert resp.status_code == 200 and resp.json()["status"] == "active"
    emit(payment, "payment.validated")
    run()
    assert [e["type"] for e in receiver.events(created["secret"])] == [
        "payment.validated"
    ]


def test_re_enabling_counts_against_the_endpoint_limit(api, receiver, settings):
    settings.WEBHOOK_MAX_ENDPOINTS = 1
    first = create(api, receiver)
    api.delete(f"/v1/webhook_endpoints/{first['id']}")
    create(api, receiver, key="we-2")
    resp = api.patch(
        f"/v1/webhook_endpoints/{first['id']}", data={"status": "active"}, format="json"
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "too_many_endpoints"
    assert WebhookEndpoint.objects.get(pk=first["id"]).status == "disabled"


def test_the_admin_shows_why_an_endpoint_is_disabled(client, merchant, receiver):
    endpoint, _ = endpoint_for(merchant, receiver)
    receiver.codes = [500]
    emit(make_payment(merchant), "payment.created")
    run()
    move_failing_start(endpoint.pk, ago=timedelta(days=4))
    receiver.codes = [500]
    webhooks.deliver_due()
    endpoint.refresh_from_db()
    assert endpoint.status == "disabled"
    client.force_login(
        User.objects.create(username="ops", is_staff=True, is_superuser=True)
    )
    for path in (
        "/admin/payments/webhookendpoint/",
        f"/admin/payments/webhookendpoint/{endpoint.pk}/change/",
    ):
        page = client.get(path).content.decode()
        assert "every delivery has failed since" in page


# --- The receiver's answer ---------------------------------------------------------


def test_at_most_4_kib_of_the_answer_is_kept_and_none_is_logged(
    merchant, receiver, caplog
):
    receiver.codes = [500]
    receiver.reply_body = b"stack trace " + b"x" * 20_000 + b" SECRET-TAIL"
    endpoint_for(merchant, receiver)
    emit(make_payment(merchant), "payment.created")
    with caplog.at_level(logging.DEBUG):
        run()
    attempt = WebhookDelivery.objects.get()
    assert len(attempt.last_response_body.encode()) == 4096
    assert attempt.last_response_body.startswith("stack trace xxx")
    assert "SECRET-TAIL" not in attempt.last_response_body
    assert "stack trace" not in caplog.text and "xxxxxxxx" not in caplog.text
    receiver.reply_body = '{"ok": "ünïcode"}'.encode()
    webhooks.deliver_due()
    attempt.refresh_from_db()
    assert attempt.status == "succeeded"
    assert attempt.last_response_body == '{"ok": "ünïcode"}'


def test_the_answer_is_shown_with_the_delivery_without_card_numbers(
    api, merchant, receiver
):
    created = create(api, receiver)
    receiver.reply_body = b"thanks for card 4242424242424242"
    emit(make_payment(merchant), "payment.created")
    run()
    resp = api.get(f"/v1/webhook_endpoints/{created['id']}/deliveries")
    shown = resp.json()["data"][0]["last_response_body"]
    assert shown.startswith("thanks for card ")
    assert "4242424242424242" not in resp.content.decode()
    assert "4242424242424242" not in WebhookDelivery.objects.get().last_response_body
