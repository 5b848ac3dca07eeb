"""One grep for a payment id finds its whole path: the request that accepted
it (with its request id), the relay that published it and every stage that
moved it, each a JSON line, across the web, relay and worker processes."""

import io
import json
import logging

import pytest
import redis
from django.conf import settings

from core import logs
from core.pan import RedactPANFilter
from payments.models import Payment
from payments.services.keys import api_key_create
from tests.factories import MerchantFactory, card_token
from tests.stack import Stack, wait_until


@pytest.fixture
def stack(transactional_db, tmp_path):
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    s = Stack(tmp_path)
    yield s
    s.stop_all()


@pytest.fixture
def web_log():
    """This process is the web here: its lines, rendered as in production."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    config = logs.formatter("json")
    handler.setFormatter(config.pop("()")(**config))
    handler.addFilter(RedactPANFilter())
    logging.getLogger().addHandler(handler)
    yield stream
    logging.getLogger().removeHandler(handler)


def test_one_grep_finds_a_payments_whole_path(stack, client_for, web_log):
    merchant = MerchantFactory(primary_gateway="sandbox")
    _, secret = api_key_create(merchant=merchant)
    token = card_token(merchant)
    resp = client_for(secret).post(
        "/v1/payments",
        data={"amount": 1500, "currency": "usd", "source": token.id},
        format="json",
        HTTP_IDEMPOTENCY_KEY="trail-1",
        HTTP_X_REQUEST_ID="req-trail-1",
    )
    assert resp.status_code == 202
    payment_id = resp.json()["id"]
    stack.worker()
    stack.relay()
    wait_until(
        lambda: Payment.objects.get(pk=payment_id).status == "settled", timeout=60
    )
    text = "\n".join(
        [web_log.getvalue(), *(path.read_text() for path in stack.logs.values())]
    )
    trail = [json.loads(line) for line in text.splitlines() if payment_id in line]
    events = [(e["event"], e.get("stage")) for e in trail]
    assert ("payment.accepted", None) in events
    assert ("relay.published", "validate") in events
    for stage in ("validate", "enrich", "execute", "settle"):
        assert ("stage.done", stage) in events, events
    accepted = next(e for e in trail if e["event"] == "payment.accepted")
    assert accepted["request_id"] == "req-trail-1"
    assert accepted["merchant_id"] == merchant.id
    done = [e for e in trail if e["event"] == "stage.done"]
    assert all(e["task"].startswith("payments.") and e["task_id"] for e in done)
    assert "4242424242424242" not in text
