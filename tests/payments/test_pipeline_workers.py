"""The pipeline end to end with real processes: Celery workers, the relay, beat,
the gateway simulator over HTTP, PostgreSQL and Redis. Processes are SIGKILLed."""

import json
import signal
import time
import urllib.request

import pytest
import redis
from django.conf import settings

from gateways.models import SandboxCharge, SandboxRefund
from payments.models import DeadLetter, Event, Payment
from payments.services.keys import api_key_create
from tests.factories import MerchantFactory
from tests.stack import Stack, free_port, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

FINAL = ("settled", "declined", "failed")


@pytest.fixture
def stack(transactional_db, tmp_path):
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    # In-process pipeline tests charge the sandbox from gateway pool threads,
    # whose own connections commit outside the test's transaction: start from
    # an empty gateway log, or reconcile finds their charges here.
    SandboxRefund.objects.all().delete()
    SandboxCharge.objects.all().delete()
    s = Stack(tmp_path)
    yield s
    s.stop_all()


def tokenize(merchant, number):
    from vault.services import token_create

    return token_create(
        merchant_id=merchant.id, number=number, exp_month=12, exp_year=2099, cvc="123"
    )


def create_payments(client, token, n, prefix="p", amount=1000):
    ids = []
    for i in range(n):
        resp = client.post(
            "/v1/payments",
            data={"amount": amount + i, "currency": "usd", "source": token.id},
            format="json",
            HTTP_IDEMPOTENCY_KEY=f"{prefix}-{i}",
        )
        assert resp.status_code == 202, resp.content
        ids.append(resp.json()["id"])
    return ids


def all_final(ids):
    open_ = Payment.objects.filter(pk__in=ids).exclude(status__in=FINAL).count()
    return open_ == 0


def wait_final(stack, ids, timeout=90):
    try:
        wait_until(lambda: all_final(ids), timeout=timeout, interval=0.3)
    except AssertionError:
        states = list(
            Payment.objects.filter(pk__in=ids).values_list("status", flat=True)
        )
        raise AssertionError(f"not final: {states}\n{stack.log_text()}") from None


def sim_charges(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/records", timeout=10) as r:
        data = json.loads(r.read())
    return [row for row in data["data"] if row["kind"] == "charge"]


def sim_control(port, **knobs):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/_control",
        data=json.dumps(knobs).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def charges_per_payment(rows):
    counts = {}
    for row in rows:
        if row.get("status") == "succeeded":
            counts[row["payment_id"]] = counts.get(row["payment_id"], 0) + 1
    return counts


def test_each_test_card_ends_in_its_state_with_no_manual_step(stack, client_for):
    merchant = MerchantFactory(primary_gateway="sandbox")
    _, secret = api_key_create(merchant=merchant)
    api = client_for(secret)
    cards = {
        "4242424242424242": ("settled", ""),
        "4000000000000002": ("declined", "card_declined"),
        "4000000000009995": ("declined", "insufficient_funds"),
        "4000000000000119": ("failed", "gateway_unavailable"),
    }
    ids = {}
    for number in cards:
        ids[number] = create_payments(
            api, tokenize(merchant, number), 1, prefix=number[-4:]
        )[0]
    stack.worker()
    stack.relay()
    wait_final(stack, list(ids.values()))
    for number, (status, code) in cards.items():
        payment = Payment.objects.get(pk=ids[number])
        assert (payment.status, payment.failure_code) == (status, code), number
    settled = Payment.objects.get(pk=ids["4242424242424242"])
    assert settled.settled_at is not None and settled.fee is not None
    from ledger.models import JournalEntry

    assert JournalEntry.objects.filter(reference=settled.pk).count() == 1
    failed = ids["4000000000000119"]
    assert DeadLetter.objects.filter(payment_id=failed, stage="execute").count() == 1
    assert not DeadLetter.objects.exclude(payment_id=failed).exists()  # declines aren't
    assert not Event.objects.filter(
        published_at__isnull=True, type="payment.created"
    ).exists()
    from django.core.management import call_command

    call_command("reconcile", "--no-progress")  # exits non-zero on any break


def test_sigkill_worker_mid_batch_loses_nothing_and_charges_once(stack, client_for):
    port = free_port()
    stack.env["GATEWAY_SIMULATOR_URLS"] = f"simulator=http://127.0.0.1:{port}"
    stack.env["SURGE_SWEEP_AFTER_SECONDS"] = "3"
    stack.env["SURGE_SWEEP_EVERY_SECONDS"] = "1"
    stack.simulator("sim", port, "--latency-ms", "400-600")
    merchant = MerchantFactory(primary_gateway="simulator")
    _, secret = api_key_create(merchant=merchant)
    ids = create_payments(
        client_for(secret), tokenize(merchant, "4242424242424242"), 40
    )
    stack.worker("w1", concurrency=4)
    stack.relay()
    stack.beat()
    wait_until(
        lambda: Payment.objects.filter(pk__in=ids, status="processing").exists(),
        timeout=60,
        interval=0.05,
    )
    stack.kill("w1", signal.SIGKILL)
    in_flight = Payment.objects.filter(pk__in=ids, status="processing").count()
    assert in_flight > 0
    stack.worker("w2", concurrency=4)
    wait_final(stack, ids, timeout=120)
    assert set(Payment.objects.filter(pk__in=ids).values_list("status", flat=True)) == {
        "settled"
    }
    counts = charges_per_payment(sim_charges(port))
    assert set(counts) == set(ids)
    assert set(counts.values()) == {1}


def test_flushing_redis_mid_burst_still_finishes_every_payment(stack, client_for):
    """FLUSHDB on this test's Redis database (FLUSHALL would also wipe the other
    xdist worker's broker): every queued message is lost; the sweeper recovers."""
    port = free_port()
    stack.env["GATEWAY_SIMULATOR_URLS"] = f"simulator=http://127.0.0.1:{port}"
    stack.env["SURGE_SWEEP_AFTER_SECONDS"] = "2"
    stack.env["SURGE_SWEEP_EVERY_SECONDS"] = "1"
    stack.env["SURGE_TASK_BATCH_SIZE"] = "10"
    stack.simulator("sim", port, "--latency-ms", "50-100")
    merchant = MerchantFactory(primary_gateway="simulator")
    _, secret = api_key_create(merchant=merchant)
    ids = create_payments(
        client_for(secret), tokenize(merchant, "4242424242424242"), 150
    )
    stack.relay()
    wait_until(
        lambda: not Event.objects.filter(published_at__isnull=True).exists(), timeout=30
    )
    redis.Redis.from_url(settings.REDIS_URL).flushdb()  # every published task is gone
    stack.worker(concurrency=8)
    stack.beat()
    wait_final(stack, ids, timeout=120)
    assert Payment.objects.filter(pk__in=ids, status="settled").count() == len(ids)
    assert set(charges_per_payment(sim_charges(port)).values()) == {1}


def test_outage_opens_breaker_fails_over_then_recovers(stack, client_for):
    from gateways.services import breaker_state

    primary, secondary = free_port(), free_port()
    stack.env["GATEWAY_SIMULATOR_URLS"] = (
        f"simulator=http://127.0.0.1:{primary},simulator_b=http://127.0.0.1:{secondary}"
    )
    stack.env["GATEWAY_BREAKER_RESET_SECONDS"] = "3"
    stack.simulator("sim_a", primary, "--latency-ms", "5-10", "--outage")
    stack.simulator("sim_b", secondary, "--latency-ms", "5-10")
    merchant = MerchantFactory(
        primary_gateway="simulator", secondary_gateway="simulator_b"
    )
    _, secret = api_key_create(merchant=merchant)
    api = client_for(secret)
    token = tokenize(merchant, "4242424242424242")
    first = create_payments(api, token, 20, prefix="outage")
    stack.worker(concurrency=4)
    stack.relay()
    wait_final(stack, first)
    assert set(
        Payment.objects.filter(pk__in=first).values_list("gateway", flat=True)
    ) == {"simulator_b"}
    assert breaker_state("simulator") == "open"
    assert not charges_per_payment(sim_charges(primary))
    sim_control(primary, outage=False)
    time.sleep(3.5)  # reset timeout: the next call is the half-open trial
    later = create_payments(api, token, 5, prefix="recovered")
    wait_final(stack, later)
    assert breaker_state("simulator") == "closed"
    assert set(
        Payment.objects.filter(pk__in=later).values_list("gateway", flat=True)
    ) == {"simulator"}


def test_timeout_after_send_is_resolved_by_inquiry_with_one_charge(stack, client_for):
    primary, secondary = free_port(), free_port()
    stack.env["GATEWAY_SIMULATOR_URLS"] = (
        f"simulator=http://127.0.0.1:{primary},simulator_b=http://127.0.0.1:{secondary}"
    )
    stack.env["SURGE_SWEEP_AFTER_SECONDS"] = "2"
    stack.env["SURGE_SWEEP_EVERY_SECONDS"] = "1"
    stack.env["GATEWAY_READ_TIMEOUT"] = "1"
    # Every charge is recorded, then its response held past the client timeout.
    stack.simulator("sim_a", primary, "--latency-ms", "5-10", "--timeout-rate", "1.0")
    stack.simulator("sim_b", secondary, "--latency-ms", "5-10")
    merchant = MerchantFactory(
        primary_gateway="simulator", secondary_gateway="simulator_b"
    )
    _, secret = api_key_create(merchant=merchant)
    ids = create_payments(client_for(secret), tokenize(merchant, "4242424242424242"), 3)
    stack.worker(concurrency=4)
    stack.relay()
    stack.beat()
    wait_final(stack, ids)
    assert set(
        Payment.objects.filter(pk__in=ids).values_list("gateway", flat=True)
    ) == {"simulator"}
    assert not sim_charges(secondary)  # never charged elsewhere
    assert set(charges_per_payment(sim_charges(primary)).values()) == {1}
