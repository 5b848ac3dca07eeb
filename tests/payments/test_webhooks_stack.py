"""Webhooks end to end: real Celery worker, relay and beat processes deliver a
payment's events to a receiver over HTTP as the payment moves through its states."""

import pytest
import redis
from django.conf import settings

from payments.models import WebhookDelivery
from payments.services.keys import api_key_create
from tests.factories import MerchantFactory, card_token
from tests.stack import Stack, wait_until

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("webhook_settings"),
]

CARDS = {
    "4242424242424242": [
        "payment.created",
        "payment.validated",
        "payment.enriched",
        "payment.processing",
        "payment.succeeded",
        "payment.settled",
    ],
    "4000000000000002": [
        "payment.created",
        "payment.validated",
        "payment.enriched",
        "payment.processing",
        "payment.declined",
    ],
}


@pytest.fixture
def stack(transactional_db, tmp_path):
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    s = Stack(
        tmp_path,
        WEBHOOK_HORIZON_MARGIN_SECONDS="0.3",
        WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8",
    )
    yield s
    s.stop_all()


def test_a_payments_events_reach_the_merchant_in_the_order_of_its_states(
    stack, receiver, client_for
):
    merchant = MerchantFactory(primary_gateway="sandbox")
    _, key = api_key_create(merchant=merchant)
    api = client_for(key)
    created = api.post(
        "/v1/webhook_endpoints",
        data={"url": receiver.url},
        format="json",
        HTTP_IDEMPOTENCY_KEY="endpoint-1",
    )
    assert created.status_code == 201, created.content
    secret = created.json()["secret"]
    payments = {}
    for number in CARDS:
        resp = api.post(
            "/v1/payments",
            data={
                "amount": 2500,
                "currency": "usd",
                "source": card_token(merchant, number).id,
            },
            format="json",
            HTTP_IDEMPOTENCY_KEY=f"pay-{number[-4:]}",
        )
        assert resp.status_code == 202, resp.content
        payments[resp.json()["id"]] = CARDS[number]
    stack.worker()
    stack.relay()
    stack.beat()

    def final_events_received():
        types = [e["type"] for e in receiver.events(secret)]
        return types.count("payment.settled") + types.count("payment.declined") == 2

    try:
        wait_until(final_events_received, timeout=60, interval=0.3)
    except AssertionError:
        raise AssertionError(stack.log_text()) from None
    events = receiver.events(secret)  # every signature verifies
    for payment_id, expected in payments.items():
        mine = [e for e in events if e["data"]["object"]["id"] == payment_id]
        assert [e["type"] for e in mine] == expected, (payment_id, events)
        assert mine[-1]["data"]["object"]["status"] == expected[-1].split(".")[1]
    assert len({e["id"] for e in events}) == len(events)  # none twice
    bodies = b"".join(body for _, body in receiver.requests)
    for number in CARDS:
        assert number.encode() not in bodies
    # The receiver answers before the worker records the outcome.
    wait_until(
        lambda: (
            set(WebhookDelivery.objects.values_list("status", flat=True))
            == {"succeeded"}
        ),
        timeout=10,
    )
