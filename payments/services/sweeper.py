"""The sweeper: re-drive every payment left in a non-terminal state too long.

The database is the source of truth and the broker only a wake-up, so if every
broker message is lost the sweeper still finishes every payment. Each re-drive
takes a short lease (bumps ``updated_at`` conditionally) so two sweepers, or
two sweeps, do not flood the queues with the same ids.
"""

from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from payments.models import OpenPayment, Payment, Refund
from payments.services.relay import publish
from payments.state import PaymentStatus as S

STAGE_FOR_STATUS = {
    S.PENDING: "validate",
    S.VALIDATED: "execute",
    S.PROCESSING: "resolve",
    S.SUCCEEDED: "settle",
}


def sweep(
    *, older_than: timedelta | None = None, limit: int = 10_000
) -> dict[str, int]:
    """Publish stale non-terminal payments to their stage; return counts per status."""
    older_than = older_than or timedelta(seconds=settings.SURGE_SWEEP_AFTER_SECONDS)
    now = timezone.now()
    cutoff = now - older_than
    counts: dict[str, int] = {}
    table = Payment._meta.db_table
    statuses = list(STAGE_FOR_STATUS)
    marks = ", ".join(["%s"] * len(statuses))
    # The candidates come from the open-payments list (kept by triggers), so a
    # sweep reads only the payments in flight, never the whole history. One
    # statement: a concurrent sweep re-checks updated_at after waiting on the
    # row lock, so each stale payment is leased (and published) once.
    sql = (
        f"UPDATE {table} SET updated_at = %s WHERE id IN ("  # noqa: S608
        f"SELECT p.id FROM {OpenPayment._meta.db_table} o "
        f"JOIN {table} p ON p.id = o.payment_id "
        f"WHERE o.opened_at < %s AND p.status IN ({marks}) AND p.updated_at < %s "
        f"ORDER BY p.updated_at LIMIT %s) "
        f"AND status IN ({marks}) AND updated_at < %s "
        f"RETURNING id, status"
    )
    params = [now, cutoff, *statuses, cutoff, limit, *statuses, cutoff]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        leased = cursor.fetchall()
    by_status: dict[str, list[str]] = defaultdict(list)
    for payment_id, status in leased:
        by_status[status].append(payment_id)
    for status, stage in STAGE_FOR_STATUS.items():
        if by_status[status]:
            publish(stage, by_status[status])
            counts[status] = len(by_status[status])
    stale_refunds = list(
        Refund.objects.filter(status=Refund.Status.PENDING, created_at__lt=cutoff)
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )
    if stale_refunds:  # the gateway call is keyed by refund id: a repeat is safe
        publish("refund", stale_refunds)
        counts["refund"] = len(stale_refunds)
    return counts
