"""Replay: mark chosen outbox events unpublished so the relay sends them again,
or re-drive the work of open dead letters."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction

from payments.models import AuditLog, DeadLetter, Event
from payments.services.deadletters import dead_letter_resolve
from payments.services.handoff import send
from payments.services.operations import audit
from payments.state import AWAITING_OPERATOR, TERMINAL, PaymentStatus, RefundStatus
from payments.workflow import PAYMENT_STEPS, REFUND_STEPS, Step


def events_to_replay(
    *,
    event_ids: Sequence[str] = (),
    payment_ids: Sequence[str] = (),
    types: Sequence[str] = (),
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[str]:
    qs = Event.objects.all()
    if event_ids:
        qs = qs.filter(pk__in=event_ids)
    if payment_ids:
        qs = qs.filter(payment_id__in=payment_ids)
    if types:
        qs = qs.filter(type__in=types)
    if since:
        qs = qs.filter(created_at__gte=since)
    if until:
        qs = qs.filter(created_at__lte=until)
    return list(qs.order_by("pk").values_list("pk", flat=True))


def replay_events(
    event_ids: Sequence[str],
    *,
    chunk: int = 5000,
    progress: Callable[[int], object] | None = None,
) -> int:
    done = 0
    for start in range(0, len(event_ids), chunk):
        part = event_ids[start : start + chunk]
        done += Event.objects.filter(pk__in=part).update(published_at=None)
        if progress:
            progress(len(part))
    return done


# --- Dead letters ------------------------------------------------------------------
#
# ``replay --dead-letters`` re-drives each open dead letter's work from where it
# stopped, through the workflow table, and writes an audit record of what it
# re-drove (actor "replay"). Whether the payment then finishes is known only
# later, in a worker: each sweep looks at the open letters replayed since
# their last finish note, and for those whose work is done writes a second
# audit record with the outcome (and resolves the letter if it ended well).
# The audit trail is the only state: a replay, then its outcome, on the letter.

REPLAY_ACTOR = "replay"
REPLAYED = "dead_letter.replay"
REPLAY_FINISHED = "dead_letter.replay_finished"
_REFUND_STAGE = REFUND_STEPS[RefundStatus.PENDING].stage


@dataclass(frozen=True, slots=True)
class Redrive:
    """What replaying one dead letter does (or would do, in a dry run)."""

    dead_letter_id: str
    payment_id: str | None
    step: Step | None  # None: nothing to re-drive
    ids: tuple[str, ...]  # the payment, or its pending refunds
    detail: str


def dead_letters_open() -> list[DeadLetter]:
    """Every open dead letter, oldest first, with its payment."""
    return list(
        DeadLetter.objects.filter(status=DeadLetter.Status.OPEN)
        .select_related("payment")
        .order_by("first_seen", "pk")
    )


def dead_letter_redrive_plan(dead_letter: DeadLetter) -> Redrive:
    """Where a dead letter's work resumes: a non-final payment at the step its
    status calls for; a refund letter's pending refunds at the refund step.
    A final payment (or a letter without one) has nothing to re-drive."""
    payment = dead_letter.payment
    if payment is None:
        return Redrive(
            dead_letter.pk, None, None, (), "no payment: nothing to re-drive"
        )
    if dead_letter.stage == _REFUND_STAGE:
        pending = tuple(
            payment.refunds.filter(status=RefundStatus.PENDING)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        if not pending:
            return Redrive(
                dead_letter.pk, payment.pk, None, (),
                "no pending refund: nothing to re-drive",
            )  # fmt: skip
        step = REFUND_STEPS[RefundStatus.PENDING]
        return Redrive(
            dead_letter.pk, payment.pk, step, pending,
            f"re-sent refund(s) {', '.join(pending)} to {step.stage}",
        )  # fmt: skip
    step = PAYMENT_STEPS.get(payment.status)
    if step is None:
        why = (
            "waits for an operator (approve or decline it in the admin)"
            if payment.status in AWAITING_OPERATOR
            else "is final"
        )
        return Redrive(
            dead_letter.pk, payment.pk, None, (),
            f"payment {why} ({payment.status}): nothing to re-drive",
        )  # fmt: skip
    return Redrive(
        dead_letter.pk, payment.pk, step, (payment.pk,),
        f"re-driven from {payment.status} to {step.stage}",
    )  # fmt: skip


def dead_letters_replay(
    dead_letters: Sequence[DeadLetter],
    *,
    progress: Callable[[int], object] | None = None,
) -> list[Redrive]:
    """Re-drive each letter's work and audit what was re-driven."""
    plans = []
    for dead_letter in dead_letters:
        plan = dead_letter_redrive_plan(dead_letter)
        if plan.step is not None:
            send(plan.step, plan.ids)
            audit(
                actor=REPLAY_ACTOR, action=REPLAYED, obj=dead_letter,
                detail=plan.detail,
            )  # fmt: skip
        plans.append(plan)
        if progress:
            progress(1)
    return plans


def _work_done(dead_letter: DeadLetter) -> tuple[bool, bool, str]:
    """(finished, ended well, what happened) for a replayed letter's work."""
    payment = dead_letter.payment
    refunds = dict(
        payment.refunds.order_by("pk").values_list("pk", "status")
    )  # a payment has a handful
    if dead_letter.stage == _REFUND_STAGE:
        if RefundStatus.PENDING in refunds.values():
            return False, False, ""
        failed = [pk for pk, status in refunds.items() if status == RefundStatus.FAILED]
        detail = ", ".join(f"{pk} {status}" for pk, status in refunds.items())
        return True, not failed, f"refunds of {payment.pk}: {detail}"
    if payment.status not in TERMINAL:
        return False, False, ""
    return (
        True,
        payment.status == PaymentStatus.SETTLED,
        f"payment {payment.pk} {payment.status}",
    )


def dead_letters_replay_finish() -> int:
    """Note the outcome of replayed dead letters whose work has finished:
    an audit record each (actor "replay"), and the letter resolved if the
    payment settled (or, for a refund letter, no refund failed). Run by every
    sweep; returns how many were noted."""
    replayed_ids = AuditLog.objects.filter(
        object_type=DeadLetter.__name__, action=REPLAYED
    ).values("object_id")
    letters = {
        dl.pk: dl
        for dl in DeadLetter.objects.filter(
            status=DeadLetter.Status.OPEN,
            payment__isnull=False,
            pk__in=replayed_ids,
        ).select_related("payment")
    }
    if not letters:
        return 0
    last: dict[tuple[str, str], object] = {}
    for object_id, action, at in AuditLog.objects.filter(
        object_type=DeadLetter.__name__,
        object_id__in=list(letters),
        action__in=[REPLAYED, REPLAY_FINISHED],
    ).values_list("object_id", "action", "created_at"):
        key = (object_id, action)
        last[key] = max(at, last.get(key, at))
    noted = 0
    for pk, dead_letter in letters.items():
        replayed = last.get((pk, REPLAYED))
        finished = last.get((pk, REPLAY_FINISHED))
        if replayed is None or (finished is not None and finished >= replayed):
            continue
        done, good, detail = _work_done(dead_letter)
        if not done:
            continue
        with transaction.atomic():
            audit(
                actor=REPLAY_ACTOR, action=REPLAY_FINISHED, obj=dead_letter,
                detail=detail,
            )  # fmt: skip
            if good:
                dead_letter_resolve(
                    dead_letter=dead_letter, resolution=f"after replay: {detail}"
                )
        noted += 1
    return noted
