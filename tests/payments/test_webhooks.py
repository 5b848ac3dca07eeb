"""Webhooks to merchants: dispatch behind the commit horizon, signed delivery
over real HTTP (a receiver on a loopback port), retries and dead letters."""

import threading
import time

import psycopg
import pytest
from django.db import connection
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from core.ids import id_timestamp_ms, new_id
from payments.models import DeadLetter, Event, Refund, WebhookDelivery, WebhookEndpoint
from payments.services import webhooks
from payments.services.events import events_insert
from payments.services.webhooks import delivery, dispatch
from tests.factories import MerchantFactory
from tests.payments.webhook_helpers import emit, endpoint_for, make_payment, run

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("webhook_settings", "in_test_transaction"),
]
committed = pytest.mark.django_db(transaction=True)


# --- Delivery ----------------------------------------------------------------


def test_event_is_posted_with_a_standard_webhooks_signature(merchant, receiver):
    _, secret = endpoint_for(merchant, receiver)
    payment = make_payment(merchant)
    emit(payment, "payment.created")
    assert run()["succeeded"] == 1
    ((headers, body),) = receiver.requests
    event = Webhook(secret).verify(body, headers)
    stored = Event.objects.get(payment=payment)
    assert headers["webhook-id"] == stored.id
    assert event["id"] == stored.id and event["type"] == "payment.created"
    assert event["created"] == int(stored.created_at.timestamp())
    obj = event["data"]["object"]
    assert obj["object"] == "payment" and obj["id"] == payment.pk
    assert obj["amount"] == 1234 and obj["source"] == payment.source_id
    with pytest.raises(Exception, match="signature"):
        Webhook(webhooks.new_secret()).verify(body, headers)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
        "succeeded",
        1,
        200,
    )
    assert delivery.delivered_at is not None and delivery.next_attempt_at is None
    assert run().get("succeeded") is None  # nothing twice


def test_a_500_is_retried_and_then_succeeds(merchant, receiver):
    endpoint_for(merchant, receiver)
    receiver.codes = [500]
    emit(make_payment(merchant), "payment.created")
    assert run()["retrying"] == 1
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.last_error, delivery.attempts) == (
        "pending",
        "HTTP 500",
        1,
    )
    assert webhooks.deliver_due() == {"succeeded": 1}
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
        "succeeded",
        2,
        200,
    )
    ids = {h["webhook-id"] for h, _ in receiver.requests}
    assert len(receiver.requests) == 2 and len(ids) == 1  # same id on a retry


def test_retries_wait_for_the_schedule(merchant, receiver, settings):
    settings.WEBHOOK_RETRY_SCHEDULE = [300]
    endpoint_for(merchant, receiver)
    receiver.codes = [503]
    emit(make_payment(merchant), "payment.created")
    before = time.time()
    run()
    delivery = WebhookDelivery.objects.get()
    wait = delivery.next_attempt_at.timestamp() - before
    assert 0.8 * 300 - 1 <= wait <= 1.2 * 300 + 1  # the schedule, with jitter
    assert webhooks.deliver_due() == {}


def test_last_failed_attempt_fails_the_delivery_and_opens_a_dead_letter(
    merchant, receiver
):
    endpoint, _ = endpoint_for(merchant, receiver)
    receiver.codes = [500, 502, 404]
    payment = make_payment(merchant)
    emit(payment, "payment.settled")
    assert run()["retrying"] == 1
    assert webhooks.deliver_due() == {"retrying": 1}
    assert webhooks.deliver_due() == {"failed": 1}
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_error) == (
        "failed",
        3,
        "HTTP 404",
    )
    dead = DeadLetter.objects.get(stage="webhook")
    assert dead.payment_id == payment.pk and dead.status == "open"
    assert delivery.pk in dead.message and endpoint.pk in dead.message
    assert receiver.url not in dead.message
    assert webhooks.deliver_due() == {}


def test_an_unreachable_endpoint_is_retried_with_a_short_error(merchant, receiver):
    endpoint_for(merchant, receiver)
    receiver.close()  # connection refused from now on
    emit(make_payment(merchant), "payment.created")
    run()
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "pending" and delivery.last_error == "ConnectError"
    assert delivery.last_status_code is None


def test_a_slow_endpoint_times_out_and_is_retried(merchant, receiver, settings):
    settings.WEBHOOK_READ_TIMEOUT = 0.2
    endpoint_for(merchant, receiver)
    original = receiver.server.RequestHandlerClass.do_POST

    def slow(handler):
        time.sleep(0.6)
        original(handler)

    receiver.server.RequestHandlerClass.do_POST = slow
    emit(make_payment(merchant), "payment.created")
    run()
    assert WebhookDelivery.objects.get().last_error == "ReadTimeout"


def test_disabled_endpoint_receives_nothing_more(merchant, receiver):
    endpoint, _ = endpoint_for(merchant, receiver)
    emit(make_payment(merchant), "payment.created")
    time.sleep(0.003)
    dispatch.dispatch()
    webhooks.webhook_endpoint_disable(endpoint=endpoint)
    assert webhooks.deliver_due() == {"failed": 1}
    assert WebhookDelivery.objects.get().last_error == "endpoint disabled"
    assert not receiver.requests and not DeadLetter.objects.exists()
    emit(make_payment(merchant), "payment.created")
    assert run() == {"events": 0, "deliveries": 0}
    assert not receiver.requests
    assert WebhookDelivery.objects.count() == 1


def test_a_killed_workers_claim_is_due_again_after_the_lease(
    merchant, receiver, settings
):
    endpoint_for(merchant, receiver)
    emit(make_payment(merchant), "payment.created")
    time.sleep(0.003)
    dispatch.dispatch()
    settings.WEBHOOK_LEASE_SECONDS = 300
    assert len(delivery._claim(10)) == 1  # claimed, then the worker dies
    assert webhooks.deliver_due() == {}  # leased: nobody else posts it
    WebhookDelivery.objects.update(next_attempt_at=timezone.now())
    assert webhooks.deliver_due() == {"succeeded": 1}  # the lease ran out
    assert WebhookDelivery.objects.get().attempts == 2


def test_refund_events_carry_the_refund(merchant, receiver):
    _, secret = endpoint_for(merchant, receiver, enabled_events=["refund.created"])
    payment = make_payment(merchant)
    refund = Refund.objects.create(payment=payment, amount=100, currency="usd")
    events_insert("refund.created", [(merchant.id, payment.pk, {"refund": refund.pk})])
    run()
    (event,) = receiver.events(secret)
    assert event["data"]["object"]["id"] == refund.pk
    assert event["data"]["object"]["object"] == "refund"


# --- Dispatch ----------------------------------------------------------------


def test_dispatching_an_event_twice_delivers_it_once(merchant, receiver):
    endpoint, _ = endpoint_for(merchant, receiver)
    payment = make_payment(merchant)
    emit(payment, "payment.created", "payment.validated")
    time.sleep(0.003)
    assert dispatch.dispatch()["deliveries"] == 2
    start = endpoint.cursor
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(cursor=start)  # rewind
    assert dispatch.dispatch()["deliveries"] == 2  # seen again ...
    assert WebhookDelivery.objects.count() == 2  # ... but not delivered twice
    webhooks.deliver_due()
    assert len(receiver.requests) == 2


@committed
def test_two_dispatchers_at_once_create_each_delivery_once(merchant, receiver):
    endpoint_for(merchant, receiver)
    payment = make_payment(merchant)
    emit(payment, *["payment.created"] * 200)
    time.sleep(0.003)
    barrier = threading.Barrier(2)

    def go():
        barrier.wait()
        try:
            dispatch.dispatch(batch_size=50)
        finally:
            connection.close()

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dispatch.dispatch()
    assert WebhookDelivery.objects.count() == 200
    assert WebhookDelivery.objects.values("event_id").distinct().count() == 200


def test_only_enabled_event_types_are_sent(merchant, receiver):
    _, secret = endpoint_for(
        merchant, receiver, enabled_events=["payment.settled", "payment.failed"]
    )
    emit(
        make_payment(merchant),
        "payment.created",
        "payment.validated",
        "payment.settled",
    )
    run()
    assert [e["type"] for e in receiver.events(secret)] == ["payment.settled"]


def test_events_of_other_merchants_and_before_creation_are_not_sent(merchant, receiver):
    emit(make_payment(merchant), "payment.created")  # before the endpoint
    _, secret = endpoint_for(merchant, receiver)
    other = MerchantFactory()
    emit(make_payment(other), "payment.created")
    mine = make_payment(merchant)
    emit(mine, "payment.validated")
    run()
    (event,) = receiver.events(secret)
    assert event["data"]["object"]["id"] == mine.pk


def test_each_endpoint_of_a_merchant_gets_its_own_delivery(merchant, receiver):
    _, first = endpoint_for(merchant, receiver)
    _, second = endpoint_for(merchant, receiver)
    emit(make_payment(merchant), "payment.created")
    run()
    assert len(receiver.requests) == 2
    secrets = {first, second}
    for headers, body in receiver.requests:
        assert sum(_verifies(s, body, headers) for s in secrets) == 1


def _verifies(secret, body, headers) -> bool:
    try:
        Webhook(secret).verify(body, headers)
    except Exception:
        return False
    return True


def _open_transaction():
    params = connection.get_connection_params()
    keep = ("dbname", "user", "password", "host", "port")
    return psycopg.connect(**{k: params[k] for k in keep if params.get(k)})


def _insert_uncommitted(conn, event_id, merchant, payment):
    conn.execute(
        "INSERT INTO payments_event "
        "(id, type, merchant_id, payment_id, data, created_at) "
        "VALUES (%s, 'payment.validated', %s, %s, '{}', now())",
        [event_id, merchant.id, payment.pk],
    )


@committed
def test_an_event_committed_late_with_an_older_id_is_still_delivered(
    merchant, receiver, settings
):
    settings.WEBHOOK_HORIZON_MARGIN_SECONDS = 0.05
    endpoint, secret = endpoint_for(merchant, receiver)
    payment = make_payment(merchant)
    conn = _open_transaction()
    late_id = new_id("evt")  # made first ...
    try:
        _insert_uncommitted(conn, late_id, merchant, payment)
        time.sleep(0.01)
        emit(payment, "payment.succeeded")  # ... committed by someone else first
        time.sleep(0.1)
        webhooks.run_once()
        endpoint.refresh_from_db()
        assert endpoint.cursor < late_id  # held back behind the open transaction
        assert not receiver.requests
        conn.commit()
    finally:
        conn.close()
    time.sleep(0.1)
    webhooks.run_once()
    received = [e["id"] for e in receiver.events(secret)]
    assert received[0] == late_id and len(received) == 2
    endpoint.refresh_from_db()
    assert endpoint.cursor > max(received)


@committed
def test_without_the_horizon_that_late_event_would_be_lost(
    merchant, receiver, monkeypatch
):
    """The reason for the horizon: a cursor at 'now' jumps over the open one."""
    monkeypatch.setattr(dispatch, "horizon_ms", dispatch.now_ms)
    endpoint_for(merchant, receiver)
    payment = make_payment(merchant)
    conn = _open_transaction()
    late_id = new_id("evt")
    try:
        _insert_uncommitted(conn, late_id, merchant, payment)
        time.sleep(0.01)
        emit(payment, "payment.succeeded")
        run()
        conn.commit()
    finally:
        conn.close()
    run()
    assert late_id not in {h["webhook-id"] for h, _ in receiver.requests}


def test_horizon_ids_bound_the_ids_of_their_millisecond():
    event_id = new_id("evt")
    ms = id_timestamp_ms(event_id)
    assert webhooks.id_at("evt", ms) <= event_id <= webhooks.id_at("evt", ms, last=True)
    assert webhooks.id_at("evt", ms - 1, last=True) < webhooks.id_at("evt", ms)
    assert id_timestamp_ms(webhooks.id_at("evt", ms, last=True)) == ms
