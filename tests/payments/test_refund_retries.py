"""A refund that gets no answer from the gateway is retried later, with
backoff, under the same key; out of retries it fails with a dead letter; one
whose outcome is unknown is never failed. Real simulators on loopback, real
breakers; time is moved by rewriting next_attempt_at in the database."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from gateways.services import breaker_state, charge_records
from ledger.selectors import merchant_balance
from payments.models import DeadLetter, Event, Payment, Refund
from payments.services import pipeline, refunds, sweeper
from payments.services.enrich import enrich_batch
from payments.services.refunds import (
    REFUND_MAX_ATTEMPTS,
    REFUND_RETRY_BASE_MS,
    refund_create,
    refund_execute_batch,
    refunds_lease_due,
)
from tests.factories import MerchantFactory, card_token
from tests.payments.gateway_helpers import control, simulators

pytestmark = pytest.mark.django_db
__all__ = ["simulators"]  # the fixture, used by name


@pytest.fixture
def merchant(db):
    return MerchantFactory(primary_gateway="simulator", fee_bps=0, fee_fixed=0)


@pytest.fixture
def sim(simulators):
    return simulators["simulator"]


def settled(merchant, amount=5000):
    """A payment charged at the simulator and settled through the pipeline."""
    payment = Payment.objects.create(
        merchant=merchant, amount=amount, currency="usd",
        source=card_token(merchant),
    )  # fmt: skip
    pipeline.validate_batch([payment.pk])
    enrich_batch([payment.pk])
    pipeline.execute_batch([payment.pk])
    pipeline.settle_batch([payment.pk])
    payment.refresh_from_db()
    assert (payment.status, payment.gateway) == ("settled", "simulator")
    return payment


def refunds_at(gateway, refund_id):
    return [
        r
        for r in charge_records(gateway)
        if r.kind == "refund" and r.idempotency_key == refund_id
    ]


def make_due(refund):
    Refund.objects.filter(pk=refund.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )


def test_an_outage_leaves_the_refund_pending_with_a_backed_off_next_attempt(
    merchant, sim
):
    payment = settled(merchant)
    refund = refund_create(merchant=merchant, payment_id=payment.pk)
    control(sim, outage=True)
    before = timezone.now()
    assert refund_execute_batch([refund.pk])["retrying"] == 1
    refund.refresh_from_db()
    assert (refund.status, refund.attempts, refund.outcome_unknown) == (
        "pending", 1, False,
    )  # fmt: skip
    # Full jitter below the first ceiling (base), never in the past.
    ceiling = timedelta(milliseconds=REFUND_RETRY_BASE_MS)
    assert before <= refund.next_attempt_at <= timezone.now() + ceiling
    assert not DeadLetter.objects.exists()

    Refund.objects.filter(pk=refund.pk).update(
        next_attempt_at=timezone.now() + timedelta(minutes=5)
    )
    assert refunds_lease_due() == []  # not due yet: the sweeper leaves it
    make_due(refund)
    assert refunds_lease_due() == [refund.pk]
    assert refunds_lease_due() == []  # leased: the next sweep does not resend

    control(sim, outage=False)
    time.sleep(1.6)  # the outage opened the breaker; it half-opens now
    assert refund_execute_batch([refund.pk])["succeeded"] == 1
    refund.refresh_from_db()
    assert refund.status == "succeeded"
    [record] = refunds_at("simulator", refund.pk)  # one refund, same key
    assert record.amount == 5000


def test_an_open_breaker_is_waited_out_not_a_failure(merchant, sim, settings):
    payment = settled(merchant)
    settings.GATEWAY_BREAKER_RESET_SECONDS = 60
    control(sim, outage=True)
    first = refund_create(merchant=merchant, payment_id=payment.pk, amount=100)
    refund_execute_batch([first.pk])  # three failures: the breaker opens
    assert breaker_state("simulator") == "open"
    second = refund_create(merchant=merchant, payment_id=payment.pk, amount=200)
    assert refund_execute_batch([second.pk])["retrying"] == 1
    assert Refund.objects.get(pk=second.pk).status == "pending"


def test_retries_exhausted_fail_the_refund_reverse_it_and_open_a_dead_letter(
    merchant, sim
):
    payment = settled(merchant)
    refund = refund_create(merchant=merchant, payment_id=payment.pk)
    assert merchant_balance(merchant.id)["usd"]["available"] == 0
    control(sim, outage=True)
    for _ in range(REFUND_MAX_ATTEMPTS - 1):
        assert refund_execute_batch([refund.pk])["retrying"] == 1
        make_due(refund)
    assert refund_execute_batch([refund.pk])["failed"] == 1
    refund.refresh_from_db()
    payment.refresh_from_db()
    # The outage opened the breaker: the last attempts were refused unsent.
    assert (refund.status, refund.failure_code) == ("failed", "circuit_open")
    assert payment.amount_refunded == 0
    assert merchant_balance(merchant.id)["usd"]["available"] == 5000
    assert Event.objects.filter(type="refund.failed", payment=payment).count() == 1
    letter = DeadLetter.objects.get(payment=payment)
    assert (letter.stage, letter.status) == ("refund", "open")
    assert refund.pk in letter.message
    assert refunds_at("simulator", refund.pk) == []


def test_a_refund_refused_as_asked_fails_at_once_with_a_dead_letter(merchant, sim):
    payment = settled(merchant)
    Payment.objects.filter(pk=payment.pk).update(gateway_reference="ch_unknown")
    refund = refund_create(merchant=merchant, payment_id=payment.pk)
    assert refund_execute_batch([refund.pk])["failed"] == 1
    refund.refresh_from_db()
    assert refund.status == "failed" and refund.attempts == 0
    assert DeadLetter.objects.filter(payment=payment, stage="refund").exists()


def test_an_unknown_outcome_is_never_failed_and_is_found_by_its_key(
    merchant, sim, settings
):
    payment = settled(merchant)
    refund = refund_create(merchant=merchant, payment_id=payment.pk)
    # The simulator makes the refund, then holds the answer past the timeout.
    control(sim, timeout_rate=1.0, timeout_delay_ms=1500)
    assert refund_execute_batch([refund.pk])["unknown"] == 1
    control(sim, timeout_rate=0.0, outage=True)
    for _ in range(REFUND_MAX_ATTEMPTS):
        make_due(refund)
        refund_execute_batch([refund.pk])
    refund.refresh_from_db()
    assert refund.status == "pending" and refund.outcome_unknown
    assert refund.attempts == REFUND_MAX_ATTEMPTS + 1
    letter = DeadLetter.objects.get(payment=payment, stage="refund")
    assert "outcome unknown" in letter.message
    assert Payment.objects.get(pk=payment.pk).amount_refunded == 5000  # reserved

    control(sim, outage=False)
    time.sleep(1.6)  # the breaker half-opens
    make_due(refund)
    assert refund_execute_batch([refund.pk])["succeeded"] == 1
    assert len(refunds_at("simulator", refund.pk)) == 1  # made once


def test_the_sweeper_sends_a_lost_refund_and_due_retries(merchant, sim, monkeypatch):
    published = []
    monkeypatch.setattr(
        sweeper, "send", lambda step, ids: published.append((step.stage, list(ids)))
    )
    payment = settled(merchant)
    lost = refund_create(merchant=merchant, payment_id=payment.pk, amount=100)
    waiting = refund_create(merchant=merchant, payment_id=payment.pk, amount=200)
    Refund.objects.filter(pk=lost.pk).update(
        created_at=timezone.now() - timedelta(minutes=2)
    )  # its task vanished with a killed worker
    Refund.objects.filter(pk=waiting.pk).update(
        attempts=1, next_attempt_at=timezone.now() + timedelta(seconds=30)
    )
    assert sweeper.sweep(older_than=timedelta(seconds=60))["refund"] == 1
    assert published == [("refund", [lost.pk])]
    make_due(waiting)
    published.clear()
    sweeper.sweep(older_than=timedelta(seconds=60))
    assert published == [("refund", [waiting.pk])]


def test_backoff_grows_and_is_bounded():
    for attempt in range(12):
        ceiling = min(refunds.REFUND_RETRY_CAP_MS, REFUND_RETRY_BASE_MS * 2**attempt)
        delays = [refunds.refund_retry_delay(attempt) for _ in range(50)]
        assert all(timedelta(0) <= d <= timedelta(milliseconds=ceiling) for d in delays)
