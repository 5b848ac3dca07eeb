"""The sweeper: re-drive every payment left in a non-terminal state too long,
and every pending refund whose next attempt is due; and note the outcome of
replayed dead letters whose work has finished (``services.replay``).

The database is the source of truth and the broker only a wake-up, so if every
broker message is lost the sweeper still finishes every payment. Each re-drive
takes a short lease (bumps ``updated_at`` conditionally) so two sweepers, or
two sweeps, do not flood the queues with the same ids.
"""

from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from payments import sql
from payments.services.handoff import send
from payments.services.refunds import refunds_lease_due
from payments.services.replay import dead_letters_replay_finish
from payments.state import RefundStatus
from payments.workflow import PAYMENT_STEPS, REFUND_STEPS


def sweep(
    *, older_than: timedelta | None = None, limit: int = 10_000
) -> dict[str, int]:
    """Send stale non-terminal payments (and refunds) to the step that takes
    them from their status; return counts per status."""
    older_than = older_than or timedelta(seconds=settings.SURGE_SWEEP_AFTER_SECONDS)
    now = timezone.now()
    cutoff = now - older_than
    counts: dict[str, int] = {}
    with transaction.atomic():
        leased = sql.lease_stale(
            statuses=list(PAYMENT_STEPS), now=now, cutoff=cutoff, limit=limit
        )
    by_status: dict[str, list[str]] = defaultdict(list)
    for payment_id, status in leased:
        by_status[status].append(payment_id)
    for status, step in PAYMENT_STEPS.items():
        if by_status[status]:
            send(step, by_status[status])
            counts[status] = len(by_status[status])
    # Pending refunds whose next attempt is due (or that were lost), leased;
    # the gateway call is keyed by refund id, so a repeat is safe.
    due_refunds = refunds_lease_due(stale_after=older_than, limit=limit)
    if due_refunds:
        send(REFUND_STEPS[RefundStatus.PENDING], due_refunds)
        counts["refund"] = len(due_refunds)
    finished = dead_letters_replay_finish()
    if finished:
        counts["replay_finished"] = finished
    return counts
