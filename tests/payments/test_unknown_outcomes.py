"""A payment whose gateway outcome is unknown: re-submitted only where it was
sent (the recharge hole), escalated to a person after
SURGE_UNKNOWN_ESCALATE_AFTER. Real simulators on loopback, real breakers in
Redis; time is moved by rewriting the payment's timestamps in the database."""

import time
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.utils import timezone

from gateways.base import ChargeRequest
from gateways.exceptions import RetryableSafe
from gateways.services import (
    breaker_state,
    charge_with_failover,
    get_gateway,
    idempotency_key_for,
)
from payments.models import DeadLetter, Payment
from payments.services import pipeline
from payments.services.enrich import enrich_batch
from payments.services.operations import dead_letter_close
from tests.factories import MerchantFactory, card_token
from tests.payments.gateway_helpers import charges_for, control, simulators

pytestmark = pytest.mark.django_db
__all__ = ["simulators"]  # the fixture, used by name

VISA = "4242424242424242"


@dataclass(frozen=True)
class Card:
    pan: str = field(default=VISA, repr=False)
    exp_month: int = 12
    exp_year: int = 2099


@pytest.fixture
def merchant(db):
    return MerchantFactory(primary_gateway="simulator", secondary_gateway="simulator_b")


def unanswered(merchant, *, gateway="simulator", age=None):
    """A payment claimed for ``gateway`` whose charge request got no answer
    (the worker died mid-call, or the request is still on its way)."""
    payment = Payment.objects.create(
        merchant=merchant, amount=1000, currency="usd",
        source=card_token(merchant, VISA), status="processing", gateway=gateway,
        attempts=1,
    )  # fmt: skip
    if age is not None:
        then = timezone.now() - age
        Payment.objects.filter(pk=payment.pk).update(created_at=then, updated_at=then)
    return payment


def open_primary_breaker(sim, settings, seconds=3.0):
    """Trip the primary's breaker with real traffic during an outage, then end
    the outage: the breaker stays open for ``seconds``."""
    settings.GATEWAY_BREAKER_RESET_SECONDS = seconds
    control(sim, outage=True)
    with pytest.raises(RetryableSafe):
        charge_with_failover(
            payment_id="pay_trip", merchant_id="mer_trip", amount=100,
            currency="usd", card=Card(), primary="simulator",
        )  # fmt: skip
    control(sim, outage=False)
    assert breaker_state("simulator") == "open"


def test_breaker_open_and_an_empty_inquiry_charge_once_on_the_primary(
    merchant, simulators, settings
):
    payment = unanswered(merchant)
    open_primary_breaker(simulators["simulator"], settings)

    # The first inquiry finds nothing anywhere; the primary's breaker is open.
    # Failing over would charge the secondary while the first request may
    # still land on the primary: the payment waits instead.
    counts = pipeline.resolve_processing([payment.pk])
    payment.refresh_from_db()
    assert payment.status == "processing" and counts.get("unknown") == 1
    assert charges_for("simulator", payment.pk) == []
    assert charges_for("simulator_b", payment.pk) == []

    time.sleep(3.2)  # the breaker half-opens: the next sweep re-submits
    pipeline.resolve_processing([payment.pk])
    payment.refresh_from_db()
    assert (payment.status, payment.gateway) == ("succeeded", "simulator")
    [charge] = charges_for("simulator", payment.pk)
    assert charge.idempotency_key == idempotency_key_for(payment.pk, "simulator")
    assert payment.gateway_reference == charge.reference
    assert charges_for("simulator_b", payment.pk) == []


def test_a_late_first_request_is_found_not_charged_again(
    merchant, simulators, settings
):
    payment = unanswered(merchant)
    open_primary_breaker(simulators["simulator"], settings, seconds=2.0)
    pipeline.resolve_processing([payment.pk])  # nothing found; breaker open
    # The lost request lands after all, under the payment's key.
    get_gateway("simulator").charge(
        ChargeRequest(
            idempotency_key=idempotency_key_for(payment.pk, "simulator"),
            payment_id=payment.pk, merchant_id=merchant.pk, amount=1000,
            currency="usd", card=Card(),
        )
    )  # fmt: skip
    time.sleep(2.2)
    pipeline.resolve_processing([payment.pk])
    payment.refresh_from_db()
    assert payment.status == "succeeded"
    assert len(charges_for("simulator", payment.pk)) == 1
    assert charges_for("simulator_b", payment.pk) == []


def test_a_charge_failed_over_is_resubmitted_only_to_the_secondary(
    merchant, simulators
):
    # Primary provably did not charge; the failover's request went unanswered.
    payment = unanswered(merchant, gateway="simulator_b")
    pipeline.resolve_processing([payment.pk])
    payment.refresh_from_db()
    assert (payment.status, payment.gateway) == ("succeeded", "simulator_b")
    assert charges_for("simulator", payment.pk) == []
    assert len(charges_for("simulator_b", payment.pk)) == 1


def test_execute_records_the_gateway_before_charging_and_failover_moves_it(
    merchant, simulators
):
    control(simulators["simulator"], outage=True)
    payment = Payment.objects.create(
        merchant=merchant, amount=1000, currency="usd",
        source=card_token(merchant, VISA),
    )  # fmt: skip
    pipeline.validate_batch([payment.pk])
    enrich_batch([payment.pk])
    pipeline.execute_batch([payment.pk])
    payment.refresh_from_db()
    assert (payment.status, payment.gateway) == ("succeeded", "simulator_b")
    assert charges_for("simulator", payment.pk) == []


def test_unknown_outcome_past_the_limit_opens_a_resolve_dead_letter(
    merchant, simulators, settings
):
    settings.SURGE_UNKNOWN_ESCALATE_AFTER = 900
    young = unanswered(merchant, age=timedelta(seconds=890))
    old = unanswered(merchant, age=timedelta(seconds=901))
    control(simulators["simulator"], outage=True)  # inquiries fail: unknown

    counts = pipeline.resolve_processing([young.pk, old.pk])
    assert counts["escalated"] == 1
    letter = DeadLetter.objects.get()
    assert (letter.payment_id, letter.stage, letter.status) == (
        old.pk, "resolve", "open",
    )  # fmt: skip
    assert "never charged on another gateway" in letter.message
    assert Payment.objects.get(pk=old.pk).status == "processing"

    pipeline.resolve_processing([old.pk])  # inquiries continue; one letter
    letter.refresh_from_db()
    assert letter.attempts == 2 and DeadLetter.objects.count() == 1
    assert charges_for("simulator_b", old.pk) == []  # never charged elsewhere

    control(simulators["simulator"], outage=False)  # the gateway answers again
    pipeline.resolve_processing([old.pk])
    old.refresh_from_db()
    assert (old.status, old.gateway) == ("succeeded", "simulator")
    assert len(charges_for("simulator", old.pk)) == 1
    assert charges_for("simulator_b", old.pk) == []


def test_a_letter_a_person_resolved_is_not_opened_again(merchant, simulators):
    payment = unanswered(merchant, age=timedelta(hours=1))
    control(simulators["simulator"], outage=True)
    pipeline.resolve_processing([payment.pk])
    letter = DeadLetter.objects.get(payment=payment, stage="resolve")
    dead_letter_close(dead_letter=letter, actor="ops", note="asked the acquirer")
    assert "escalated" not in pipeline.resolve_processing([payment.pk])
    assert DeadLetter.objects.filter(payment=payment, status="open").count() == 0


def test_escalation_waits_for_the_setting(merchant, simulators, settings):
    settings.SURGE_UNKNOWN_ESCALATE_AFTER = 3600
    payment = unanswered(merchant, age=timedelta(minutes=30))
    control(simulators["simulator"], outage=True)
    pipeline.resolve_processing([payment.pk])
    assert not DeadLetter.objects.exists()
    Payment.objects.filter(pk=payment.pk).update(
        created_at=timezone.now() - timedelta(minutes=61)
    )
    pipeline.resolve_processing([payment.pk])
    assert DeadLetter.objects.filter(payment=payment, stage="resolve").exists()
