import pytest
from django.db import IntegrityError, connection, transaction

from payments.exceptions import IllegalTransition
from payments.models import Event, Payment
from payments.services.transitions import transition
from payments.state import (
    NON_TERMINAL,
    OPERATOR_TRANSITIONS,
    TERMINAL,
    TRANSITIONS,
    can_transition,
)
from tests.factories import TokenFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def payment(merchant):
    token = TokenFactory(merchant_id=merchant.id)
    return Payment.objects.create(
        merchant=merchant, amount=500, currency="usd", source=token
    )


def test_transition_map_has_final_states_with_no_exit():
    assert TERMINAL == {"settled", "declined", "failed"}
    # An open status has a way out; review's are an operator's only.
    assert all(TRANSITIONS[s] or OPERATOR_TRANSITIONS.get(s) for s in NON_TERMINAL)
    assert not TRANSITIONS["review"] and not can_transition("review", "enriched")
    assert can_transition("review", "enriched", operator=True)
    assert can_transition("review", "declined", operator=True)
    assert not can_transition("review", "processing", operator=True)
    assert not can_transition("settled", "pending")
    assert not can_transition("pending", "succeeded")


def test_transition_moves_and_writes_one_event(payment):
    moved = transition(payment_ids=[payment.pk], expected="pending", new="validated")
    assert moved == [payment.pk]
    payment.refresh_from_db()
    assert payment.status == "validated"
    assert list(
        Event.objects.filter(payment=payment).values_list("type", flat=True)
    ) == ["payment.validated"]


def test_running_a_transition_twice_changes_nothing_the_second_time(payment):
    transition(payment_ids=[payment.pk], expected="pending", new="validated")
    again = transition(payment_ids=[payment.pk], expected="pending", new="validated")
    assert again == []
    assert Event.objects.filter(payment=payment).count() == 1


def test_illegal_transition_is_refused_by_the_service(payment):
    with pytest.raises(IllegalTransition):
        transition(payment_ids=[payment.pk], expected="pending", new="settled")
    payment.refresh_from_db()
    assert payment.status == "pending"


def test_per_payment_fields_are_written_for_moved_rows_only(merchant, payment):
    other = Payment.objects.create(
        merchant=merchant, amount=700, currency="usd", source=payment.source,
        status="succeeded",
    )  # fmt: skip
    Payment.objects.filter(pk=payment.pk).update(status="processing")
    moved = transition(
        payment_ids=[payment.pk, other.pk],
        expected="processing",
        new="succeeded",
        per_payment={
            payment.pk: {"gateway": "sandbox", "gateway_reference": "ch_1"},
            other.pk: {"gateway": "sandbox", "gateway_reference": "ch_2"},
        },
    )
    assert moved == [payment.pk]
    payment.refresh_from_db()
    other.refresh_from_db()
    assert payment.gateway_reference == "ch_1"
    assert other.gateway_reference == ""


def test_database_refuses_an_unknown_status_written_around_the_service(payment):
    with pytest.raises(IntegrityError), transaction.atomic():
        Payment.objects.filter(pk=payment.pk).update(status="teleported")


def test_database_refuses_a_nonpositive_amount_in_raw_sql(payment):
    with pytest.raises(IntegrityError), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE payments_payment SET amount = 0 WHERE id = %s", [payment.pk]
            )


def test_database_refuses_refunding_beyond_the_amount(payment):
    with pytest.raises(IntegrityError), transaction.atomic():
        Payment.objects.filter(pk=payment.pk).update(amount_refunded=501)
