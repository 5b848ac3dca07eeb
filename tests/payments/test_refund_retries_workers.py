"""Refund retries with real processes: a Celery worker SIGKILLed while it
retries a refund loses nothing, and the refund is made once (the simulator's
own records). Workers, relay, beat and the simulator run as processes."""

import signal
import time

import pytest

from payments.models import Payment, Refund
from payments.services.keys import api_key_create
from tests.factories import MerchantFactory
from tests.payments.test_pipeline_workers import (
    create_payments,
    sim_control,
    stack,
    tokenize,
    wait_final,
)
from tests.stack import free_port, wait_until

pytestmark = pytest.mark.django_db(transaction=True)
__all__ = ["stack"]  # the fixture, used by name


def sim_refunds(port):
    import json
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/records", timeout=10) as r:
        return [row for row in json.loads(r.read())["data"] if row["kind"] == "refund"]


def test_a_worker_killed_mid_retry_loses_no_refund_and_refunds_once(stack, client_for):
    port = free_port()
    stack.env["GATEWAY_SIMULATOR_URLS"] = f"simulator=http://127.0.0.1:{port}"
    stack.env["SURGE_SWEEP_AFTER_SECONDS"] = "2"
    stack.env["SURGE_SWEEP_EVERY_SECONDS"] = "1"
    stack.env["GATEWAY_RETRY_BASE_MS"] = "5"
    stack.env["GATEWAY_RETRY_CAP_MS"] = "20"
    stack.simulator("sim", port, "--latency-ms", "5-10")
    merchant = MerchantFactory(primary_gateway="simulator", fee_bps=0, fee_fixed=0)
    _, secret = api_key_create(merchant=merchant)
    api = client_for(secret)
    [payment_id] = create_payments(api, tokenize(merchant, "4242424242424242"), 1)
    stack.worker("w1", concurrency=2)
    stack.relay()
    stack.beat()
    wait_final(stack, [payment_id])
    assert Payment.objects.get(pk=payment_id).status == "settled"

    sim_control(port, outage=True)  # the gateway does not answer refunds
    resp = api.post(
        f"/v1/payments/{payment_id}/refunds", data={}, format="json",
        HTTP_IDEMPOTENCY_KEY="refund-1",
    )  # fmt: skip
    assert resp.status_code == 202, resp.content
    refund_id = resp.json()["id"]
    wait_until(
        lambda: Refund.objects.get(pk=refund_id).attempts >= 1, timeout=30
    )  # retried later, not failed
    assert Refund.objects.get(pk=refund_id).status == "pending"

    # The gateway is back but slow: kill the worker in the middle of a retry.
    sim_control(port, outage=False, latency_ms=[3000, 3000])
    wait_until(lambda: sim_control(port)["in_flight"] > 0, timeout=30, interval=0.05)
    stack.kill("w1", signal.SIGKILL)
    assert Refund.objects.get(pk=refund_id).status == "pending"

    sim_control(port, latency_ms=[5, 10])
    stack.worker("w2", concurrency=2)
    wait_until(lambda: Refund.objects.get(pk=refund_id).status != "pending", timeout=60)
    refund = Refund.objects.get(pk=refund_id)
    assert refund.status == "succeeded", stack.log_text()
    time.sleep(0.5)
    made = [r for r in sim_refunds(port) if r["idempotency_key"] == refund_id]
    assert len(made) == 1 and made[0]["status"] == "succeeded"
    assert Payment.objects.get(pk=payment_id).amount_refunded == refund.amount
