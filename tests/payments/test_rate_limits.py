"""Rate limits and quotas against real Redis: per API key (a rate with a
burst) and per merchant (payments a minute and an hour, a batch counting its
payments), atomic under concurrency, honest about when to come back."""

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.management import CommandError, call_command
from django.db import connections

from payments.api import throttling
from payments.metrics import RATE_LIMITED, RATE_LIMITER_UNAVAILABLE
from payments.models import IdempotencyKey, Merchant, Payment
from payments.services.idempotency import key_digest
from payments.services.keys import api_key_create
from tests.apiclient import APIClient
from tests.factories import MerchantFactory, TokenFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fresh_limiter():
    throttling.reset_limiter()
    yield
    throttling.reset_limiter()


def client(secret: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return api


def merchant_with(**limits) -> tuple[Merchant, str, str]:
    merchant = MerchantFactory(**limits)
    _, secret = api_key_create(merchant=merchant)
    token = TokenFactory(merchant_id=merchant.id)
    return merchant, secret, token.id


def pay(api, token, key, amount=100):
    return api.post(
        "/v1/payments",
        data={"amount": amount, "currency": "usd", "source": token},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )


def batch(api, token, n, key):
    items = [
        {"amount": 100, "currency": "usd", "source": token, "reference": f"{key}-{i}"}
        for i in range(n)
    ]
    return api.post(
        "/v1/payment_batches",
        data={"payments": items},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )


def sample(counter, **labels) -> float:
    return counter.labels(**labels)._value.get()


def test_every_response_carries_the_tightest_limits_fields():
    _, secret, token = merchant_with(
        rate_limit_per_second=10, rate_limit_burst=20, payments_per_minute=3
    )
    api = client(secret)
    listed = api.get("/v1/payments")
    assert listed.status_code == 200
    assert listed["RateLimit-Policy"] == '"key";q=20;w=2'
    assert listed["RateLimit"].startswith('"key";r=19;t=')
    created = pay(api, token, "k1")
    assert created.status_code == 202
    # Two of three payments left this minute is tighter than 18 of 20 requests.
    assert created["RateLimit-Policy"] == '"minute";q=3;w=60'
    assert created["RateLimit"] == '"minute";r=2;t=20'


def test_n_concurrent_requests_against_a_limit_of_m_accept_exactly_m():
    merchant, secret, token = merchant_with(payments_per_hour=7)
    start = threading.Barrier(24)

    def attempt(i: int) -> int:
        try:
            api = client(secret)
            start.wait()
            return pay(api, token, f"c{i}").status_code
        finally:
            connections.close_all()

    with ThreadPoolExecutor(24) as pool:
        codes = list(pool.map(attempt, range(24)))
    assert sorted(codes).count(202) == 7
    assert codes.count(429) == 17
    assert Payment.objects.filter(merchant=merchant).count() == 7
    assert IdempotencyKey.objects.filter(merchant=merchant).count() == 7


def test_a_refused_request_writes_nothing_and_says_why():
    merchant, secret, token = merchant_with(payments_per_hour=1)
    api = client(secret)
    before = sample(RATE_LIMITED, merchant=merchant.pk, layer="hour")
    assert pay(api, token, "a").status_code == 202
    refused = pay(api, token, "b")
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limited")
    assert int(refused["Retry-After"]) > 60  # the hour's bucket refills slowly
    assert refused["RateLimit-Policy"] == '"hour";q=1;w=3600'
    assert Payment.objects.filter(merchant=merchant).count() == 1
    assert not IdempotencyKey.objects.filter(merchant=merchant, key=key_digest("b"))
    assert sample(RATE_LIMITED, merchant=merchant.pk, layer="hour") == before + 1


def test_retry_after_is_honest_a_retry_after_it_succeeds():
    _, secret, _ = merchant_with(rate_limit_per_second=1, rate_limit_burst=1)
    api = client(secret)
    assert api.get("/v1/payments").status_code == 200
    refused = api.get("/v1/payments")
    assert refused.status_code == 429
    wait = int(refused["Retry-After"])
    assert wait == 1
    time.sleep(wait)
    assert api.get("/v1/payments").status_code == 200


def test_a_merchant_at_its_quota_does_not_slow_or_block_another():
    _, busy_secret, busy_token = merchant_with(payments_per_hour=2)
    _, calm_secret, calm_token = merchant_with()
    busy, calm = client(busy_secret), client(calm_secret)
    for i in range(2):
        assert pay(busy, busy_token, f"b{i}").status_code == 202

    def timed(n: int, prefix: str) -> list[float]:
        took = []
        for i in range(n):
            t0 = time.perf_counter()
            assert pay(calm, calm_token, f"{prefix}{i}").status_code == 202
            took.append(time.perf_counter() - t0)
        return sorted(took)

    alone = timed(20, "alone")
    stop = threading.Event()
    refused = []

    def hammer():
        api = client(busy_secret)
        i = 0
        while not stop.is_set():
            refused.append(pay(api, busy_token, f"h{i}").status_code)
            i += 1
        connections.close_all()

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        during = timed(20, "during")
    finally:
        stop.set()
        thread.join()
    assert refused and set(refused) == {429}
    # The busy merchant's refusals cost the other one no more than noise.
    assert during[10] < alone[10] * 3 + 0.05


def test_a_batch_counts_its_payments():
    _, secret, token = merchant_with(payments_per_minute=10)
    api = client(secret)
    assert batch(api, token, 8, "b1").status_code == 202
    refused = batch(api, token, 3, "b2")
    assert refused.status_code == 429
    assert refused["RateLimit"].startswith('"minute";r=2;')
    assert batch(api, token, 2, "b3").status_code == 202


def test_a_batch_costs_its_key_one_request_and_its_merchant_its_payments():
    # Payroll batches of 1,000 through a key whose burst is 3 requests: the
    # key's bucket counts requests, only the merchant's quotas count payments.
    merchant, secret, token = merchant_with(
        rate_limit_per_second=1, rate_limit_burst=3, payments_per_hour=2_000
    )
    api = client(secret)
    assert batch(api, token, 1000, "big1").status_code == 202
    assert batch(api, token, 1000, "big2").status_code == 202
    assert Payment.objects.filter(merchant=merchant).count() == 2000
    refused = batch(api, token, 50, "big3")  # the hour's 2,000 are spent
    assert refused.status_code == 429
    assert refused["RateLimit"].startswith('"hour";r=')


def test_a_batch_larger_than_the_whole_quota_is_a_400_not_a_wait():
    merchant, secret, token = merchant_with(payments_per_minute=5)
    resp = batch(client(secret), token, 6, "big")
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "quota_exceeded"
    assert "Retry-After" not in resp
    assert not Payment.objects.filter(merchant=merchant).exists()


def test_each_api_key_has_its_own_rate_and_the_merchant_one_quota():
    merchant, first, token = merchant_with(
        rate_limit_per_second=1, rate_limit_burst=1, payments_per_hour=2
    )
    _, second = api_key_create(merchant=merchant)
    a, b = client(first), client(second)
    assert pay(a, token, "a1").status_code == 202
    assert a.get("/v1/payments").status_code == 429  # key a's bucket is empty
    assert pay(b, token, "b1").status_code == 202  # key b's is full
    time.sleep(1.1)
    assert pay(a, token, "a2").status_code == 429  # the merchant's quota is spent
    assert a.get("/v1/payments").status_code == 200


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_redis_down_fails_open_with_a_metric(settings, caplog):
    settings.REDIS_URL = f"redis://127.0.0.1:{_closed_port()}/0"
    _, secret, token = merchant_with(payments_per_hour=1)
    api = client(secret)
    before = sample(RATE_LIMITER_UNAVAILABLE, outcome="allowed")
    for i in range(3):  # over the quota: nothing can count it
        assert pay(api, token, f"o{i}").status_code == 202
    assert sample(RATE_LIMITER_UNAVAILABLE, outcome="allowed") == before + 3
    assert "rate limiter unavailable" in caplog.text
    assert "RateLimit" not in pay(api, token, "o9")


def test_redis_down_fails_closed_when_set(settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{_closed_port()}/0"
    settings.SURGE_RATE_LIMIT_FAIL_CLOSED = True
    merchant, secret, token = merchant_with()
    resp = pay(client(secret), token, "x")
    assert resp.status_code == 503
    assert not Payment.objects.filter(merchant=merchant).exists()


def test_create_merchant_sets_the_overrides(capsys):
    call_command(
        "create_merchant", "Flash Sale Co", "--rate-limit-per-second", "50",
        "--rate-limit-burst", "80", "--payments-per-minute", "600",
        "--payments-per-hour", "20000",
    )  # fmt: skip
    merchant = Merchant.objects.get(name="Flash Sale Co")
    assert (
        merchant.rate_limit_per_second, merchant.rate_limit_burst,
        merchant.payments_per_minute, merchant.payments_per_hour,
    ) == (50, 80, 600, 20000)  # fmt: skip
    with pytest.raises(CommandError, match="positive"):
        call_command("create_merchant", "Bad", "--payments-per-minute", "0")
    assert not Merchant.objects.filter(name="Bad").exists()
