"""The enrich stage with real processes: Celery workers, the relay and beat on
PostgreSQL and Redis. A stolen card's burst: the first payment settles, the
next ones are held for review; an operator approves one (it settles) and
declines another; a worker killed leaves nothing stuck in ``enriched``."""

import os
import signal

import pytest
import redis
from django.conf import settings

from payments.models import DeadLetter, Payment
from payments.services import operations
from payments.services.keys import api_key_create
from tests.factories import MerchantFactory
from tests.payments.test_pipeline_workers import create_payments, tokenize
from tests.stack import CELERY, Stack, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def stack(transactional_db, tmp_path):
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    s = Stack(tmp_path)
    yield s
    s.stop_all()


def statuses(ids):
    by_id = dict(Payment.objects.filter(pk__in=ids).values_list("pk", "status"))
    return [by_id.get(i) for i in ids]


def wait_statuses(stack, ids, wanted, timeout=90):
    try:
        wait_until(lambda: statuses(ids) == wanted, timeout=timeout, interval=0.3)
    except AssertionError:
        raise AssertionError(
            f"{statuses(ids)} != {wanted}\n{stack.log_text()}"
        ) from None


def test_a_card_burst_is_held_for_review_and_the_operators_verdicts_stick(
    stack, client_for
):
    merchant = MerchantFactory(primary_gateway="sandbox", risk_card_velocity_count=1)
    _, secret = api_key_create(merchant=merchant)
    card = tokenize(merchant, "4242424242424242")
    first = create_payments(client_for(secret), card, 1, prefix="a")
    stack.worker("w1", concurrency=2)
    stack.relay()
    wait_statuses(stack, first, ["settled"])
    burst = create_payments(client_for(secret), card, 3, prefix="b")
    wait_statuses(stack, burst, ["review"] * 3)
    letters = {dl.payment_id: dl for dl in DeadLetter.objects.filter(stage="review")}
    assert set(letters) == set(burst)
    approved, declined, _still_waiting = burst
    assert operations.review_approve(
        dead_letter=letters[approved], actor="olga", reason="customer called"
    )
    assert operations.review_decline(
        dead_letter=letters[declined], actor="olga", reason="card reported stolen"
    )
    wait_statuses(stack, burst, ["settled", "declined", "review"])
    assert Payment.objects.get(pk=declined).failure_code == "risk_declined"
    assert Payment.objects.get(pk=approved).fee == Payment.objects.get(pk=first[0]).fee


def test_the_sweeper_finishes_payments_left_in_enriched(stack, client_for):
    """Every execute message is lost (the worker that took them is killed and
    the broker emptied): the sweeper re-drives ``enriched`` to execute."""
    stack.env["SURGE_SWEEP_AFTER_SECONDS"] = "2"
    stack.env["SURGE_SWEEP_EVERY_SECONDS"] = "1"
    merchant = MerchantFactory(primary_gateway="sandbox")
    _, secret = api_key_create(merchant=merchant)
    ids = create_payments(
        client_for(secret), tokenize(merchant, "4242424242424242"), 20
    )
    # A worker on the validate queue only: payments stop in ``enriched``.
    stack.start(
        "validate-only",
        [CELERY, "-A", "config", "worker", "-Q", "validate", "-P", "threads",
         "-c", "2", "-n", f"validate-only-{os.getpid()}@%h", "--without-gossip",
         "--without-mingle", "--without-heartbeat"],
    )  # fmt: skip
    stack.relay()
    wait_statuses(stack, ids, ["enriched"] * len(ids))
    stack.kill("validate-only", signal.SIGKILL)
    redis.Redis.from_url(settings.REDIS_URL).flushdb()  # the hand-offs are lost
    stack.worker("w2", concurrency=2)
    stack.beat()
    wait_statuses(stack, ids, ["settled"] * len(ids), timeout=120)
