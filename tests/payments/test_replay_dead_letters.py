"""``replay --dead-letters`` and ``--event``: what is re-driven goes to the
broker (read back from Redis), the re-driven work runs, and the sweep notes
the outcome on the letter (audit, actor "replay"). Real simulator, PostgreSQL
and Redis."""

import base64
import json
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from payments.models import AuditLog, DeadLetter, Event, Payment, Refund
from payments.services import pipeline, sweeper
from payments.services.deadletters import dead_letter_record
from payments.services.enrich import enrich_batch
from payments.services.refunds import refund_create, refund_execute_batch
from tests.factories import MerchantFactory, card_token
from tests.payments.gateway_helpers import control, simulators

pytestmark = pytest.mark.django_db
__all__ = ["simulators"]  # the fixture, used by name


@pytest.fixture
def broker():
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.flushdb()
    yield client
    client.flushdb()


def sent(broker) -> list[tuple[str, list[str]]]:
    """(task name, ids) of every message waiting on the stage queues."""
    out = []
    for queue in ("validate", "execute", "settle"):
        for raw in broker.lrange(queue, 0, -1):
            message = json.loads(raw)
            args, _, _ = json.loads(base64.b64decode(message["body"]))
            out.append((message["headers"]["task"], args[0]))
    return sorted(out)


@pytest.fixture
def merchant(db):
    return MerchantFactory(primary_gateway="simulator", fee_bps=0, fee_fixed=0)


def payment_in(merchant, status, **fields):
    return Payment.objects.create(
        merchant=merchant, amount=1000, currency="usd",
        source=card_token(merchant), status=status, **fields,
    )  # fmt: skip


def audits(letter):
    return list(
        AuditLog.objects.filter(object_id=letter.pk)
        .order_by("pk")
        .values_list("actor", "action", "detail")
    )


def test_replay_dead_letters_redrives_an_unknown_outcome_and_notes_its_end(
    merchant, simulators, broker, capsys
):
    payment = payment_in(merchant, "processing", gateway="simulator", attempts=1)
    then = timezone.now() - timedelta(hours=1)
    Payment.objects.filter(pk=payment.pk).update(created_at=then, updated_at=then)
    control(simulators["simulator"], outage=True)
    pipeline.resolve_processing([payment.pk])  # unknown for an hour: escalated
    letter = DeadLetter.objects.get(payment=payment, stage="resolve")
    control(simulators["simulator"], outage=False)

    call_command("replay", dead_letters=True)
    assert sent(broker) == [("payments.resolve", [payment.pk])]
    out = capsys.readouterr().out
    assert f"{letter.pk} ({payment.pk}): re-driven from processing" in out
    assert audits(letter) == [
        ("replay", "dead_letter.replay", "re-driven from processing to resolve")
    ]

    # A worker runs what was sent; the payment succeeds but is not final yet.
    pipeline.resolve_processing([payment.pk])
    assert Payment.objects.get(pk=payment.pk).status == "succeeded"
    sweeper.sweep()
    assert len(audits(letter)) == 1  # not finished: nothing noted

    pipeline.settle_batch([payment.pk])
    assert sweeper.sweep().get("replay_finished") == 1
    letter.refresh_from_db()
    assert letter.status == "resolved"
    assert audits(letter)[-1] == (
        "replay", "dead_letter.replay_finished", f"payment {payment.pk} settled",
    )  # fmt: skip
    assert "replay_finished" not in sweeper.sweep()  # noted once


def test_replay_resends_a_refund_letters_pending_refunds(merchant, simulators, broker):
    payment = payment_in(merchant, "pending")
    pipeline.validate_batch([payment.pk])
    enrich_batch([payment.pk])
    pipeline.execute_batch([payment.pk])
    pipeline.settle_batch([payment.pk])
    refund = refund_create(merchant=merchant, payment_id=payment.pk)
    Refund.objects.filter(pk=refund.pk).update(attempts=6, outcome_unknown=True)
    letter = dead_letter_record(
        stage="refund", error_class="UnknownOutcome",
        message=f"Refund {refund.pk}: outcome unknown", payment_id=payment.pk,
    )  # fmt: skip
    broker.flushdb()

    call_command("replay", dead_letters=True)
    assert sent(broker) == [("payments.refund", [refund.pk])]
    refund_execute_batch([refund.pk])
    sweeper.sweep()
    letter.refresh_from_db()
    assert letter.status == "resolved"
    assert audits(letter)[-1][1:] == (
        "dead_letter.replay_finished", f"refunds of {payment.pk}: {refund.pk} succeeded",
    )  # fmt: skip


def test_a_replayed_payment_that_fails_again_keeps_its_letter_open(
    merchant, simulators, broker
):
    payment = payment_in(merchant, "enriched")
    letter = dead_letter_record(
        stage="execute", error_class="RetryableSafe", message="x",
        payment_id=payment.pk,
    )  # fmt: skip
    call_command("replay", dead_letters=True)
    assert sent(broker) == [("payments.execute", [payment.pk])]
    control(simulators["simulator"], outage=True)
    pipeline.execute_batch([payment.pk])
    assert Payment.objects.get(pk=payment.pk).status == "failed"
    sweeper.sweep()
    letter.refresh_from_db()
    assert letter.status == "open" and letter.attempts == 2
    assert audits(letter)[-1][1:] == (
        "dead_letter.replay_finished", f"payment {payment.pk} failed",
    )  # fmt: skip


def test_final_payments_and_orphan_letters_are_not_redriven(merchant, broker, capsys):
    failed = payment_in(merchant, "failed", failure_code="gateway_unavailable")
    dead_letter_record(
        stage="execute", error_class="RetryableSafe", message="x",
        payment_id=failed.pk,
    )  # fmt: skip
    orphan = dead_letter_record(stage="webhook", error_class="HTTP 500", message="y")
    resolved = payment_in(merchant, "validated")
    DeadLetter.objects.filter(
        pk=dead_letter_record(
            stage="execute", error_class="E", message="z", payment_id=resolved.pk
        ).pk
    ).update(status="resolved")

    call_command("replay", dead_letters=True)
    assert sent(broker) == []
    out = capsys.readouterr().out
    assert "payment is final (failed): nothing to re-drive" in out
    assert f"{orphan.pk} (no payment)" in out
    assert "0 of 2 open dead letter(s) re-driven" in out
    assert not AuditLog.objects.exists()


def test_replay_dead_letters_dry_run_sends_and_writes_nothing(merchant, broker, capsys):
    payment = payment_in(merchant, "validated")
    dead_letter_record(
        stage="execute", error_class="E", message="x", payment_id=payment.pk
    )
    call_command("replay", dead_letters=True, dry_run=True)
    assert sent(broker) == [] and not AuditLog.objects.exists()
    assert "dry run: 1 of 1 open dead letter(s) would be re-driven" in (
        capsys.readouterr().out
    )


def test_replay_by_event_marks_only_those_events(merchant, broker):
    payment = payment_in(merchant, "pending")
    events = [
        Event.objects.create(
            type="payment.created",
            merchant_id=merchant.id,
            payment=payment,
            published_at=timezone.now(),
        )
        for _ in range(3)
    ]
    call_command("replay", event=[events[0].pk, events[2].pk])
    assert set(
        Event.objects.filter(published_at__isnull=True).values_list("pk", flat=True)
    ) == {events[0].pk, events[2].pk}


@pytest.mark.parametrize("event", ["evt_nope", "pay_123", "' OR 1=1"])
def test_replay_of_an_unknown_event_is_an_error_and_changes_nothing(merchant, event):
    payment = payment_in(merchant, "pending")
    real = Event.objects.create(
        type="payment.created", merchant_id=merchant.id, payment=payment,
        published_at=timezone.now(),
    )  # fmt: skip
    with pytest.raises(CommandError, match="No such event"):
        call_command("replay", event=[real.pk, event])
    assert not Event.objects.filter(published_at__isnull=True).exists()
