"""The workflow table is the one place that routes a payment: the relay, the
sweeper, the stages' hand-off and the Celery tasks all follow it."""

from dataclasses import replace
from datetime import timedelta

import pytest
from celery import current_app
from django.utils import timezone

from payments import tasks  # noqa: F401  (registers the stage tasks)
from payments.models import Event, OpenPayment, Payment
from payments.services import handoff, sweeper
from payments.services.relay import relay_once
from payments.state import (
    AWAITING_OPERATOR,
    EVENT_FOR_STATUS,
    NON_TERMINAL,
    TERMINAL,
    TRANSITIONS,
)
from payments.state import PaymentStatus as S
from payments.workflow import (
    PAYMENT_STEPS,
    REFUND_CREATED,
    STAGE_QUEUES,
    STEP_FOR_EVENT,
    STEPS,
)
from tests.factories import TokenFactory
from tests.payments.test_relay import broker, published_ids  # noqa: F401


def test_every_non_final_status_has_exactly_one_step_and_no_final_one_has():
    """Except a status that waits for a person (review): no stage moves it."""
    assert set(PAYMENT_STEPS) == set(NON_TERMINAL) - AWAITING_OPERATOR
    assert not set(PAYMENT_STEPS) & TERMINAL
    assert S.REVIEW in NON_TERMINAL and S.REVIEW not in PAYMENT_STEPS


def test_each_step_leads_only_where_the_state_machine_allows():
    for status, step in PAYMENT_STEPS.items():
        if step.then is not None:
            assert step.then in TRANSITIONS[status]


def test_each_step_has_its_task_registered_on_its_queue():
    for step in STEPS.values():
        task = current_app.tasks[step.task]
        assert task.queue == step.queue
        assert task.acks_late  # stages are idempotent: redelivery is safe


def test_the_workers_consume_every_stage_queue():
    assert set(STAGE_QUEUES) == {s.queue for s in STEPS.values()}


def test_the_relay_wakes_the_step_of_each_event_it_carries():
    assert STEP_FOR_EVENT[EVENT_FOR_STATUS[S.PENDING]] is PAYMENT_STEPS[S.PENDING]
    assert STEP_FOR_EVENT[REFUND_CREATED].stage == "refund"


@pytest.mark.django_db(transaction=True)
def test_a_moved_batch_is_sent_to_the_step_the_table_names(broker):  # noqa: F811
    handoff.hand_on(S.VALIDATED, ["pay_a", "pay_b"])
    handoff.hand_on(S.SETTLED, ["pay_c"])  # final: nothing to send
    step = PAYMENT_STEPS[S.VALIDATED]
    assert published_ids(broker, step.queue) == ["pay_a", "pay_b"]
    messages = broker.lrange(step.queue, 0, -1)
    assert all(step.task.encode() in raw for raw in messages)
    assert sum(broker.llen(q) for q in STAGE_QUEUES) == 1


@pytest.mark.django_db(transaction=True)
def test_relay_and_sweeper_route_by_the_table(merchant, broker, monkeypatch):  # noqa: F811
    """Pointing a step at another queue moves the relay's and the sweeper's
    messages with it: neither names a stage of its own."""
    moved = replace(PAYMENT_STEPS[S.PENDING], queue="elsewhere")
    monkeypatch.setitem(PAYMENT_STEPS, S.PENDING, moved)
    monkeypatch.setitem(STEP_FOR_EVENT, EVENT_FOR_STATUS[S.PENDING], moved)
    token = TokenFactory(merchant_id=merchant.id)
    fresh = Payment.objects.create(
        merchant=merchant, amount=100, currency="usd", source=token
    )
    Event.objects.create(
        type=EVENT_FOR_STATUS[S.PENDING], merchant_id=merchant.id, payment=fresh
    )
    assert relay_once() == 1
    assert published_ids(broker, "elsewhere") == [fresh.pk]
    broker.flushdb()
    then = timezone.now() - timedelta(hours=1)
    Payment.objects.filter(pk=fresh.pk).update(updated_at=then)
    OpenPayment.objects.filter(payment_id=fresh.pk).update(opened_at=then)
    assert sweeper.sweep(older_than=timedelta(minutes=1)) == {S.PENDING: 1}
    assert published_ids(broker, "elsewhere") == [fresh.pk]
    assert broker.llen("validate") == 0
