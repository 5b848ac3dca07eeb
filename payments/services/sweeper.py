"""The sweeper: re-drive every payment left in a non-terminal state too long.

The database is the source of truth and the broker only a wake-up, so if every
broker message is lost the sweeper still finishes every payment. Each re-drive
takes a short lease (bumps ``updated_at`` conditionally) so two sweepers, or
two sweeps, do not flood the queues with the same ids.
"""

from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from payments.models import Payment, Refund
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
    # One statement: a concurrent sweep re-checks updated_at after waiting on
    # the row lock, so each stale payment is leased (and published) once.
    sql = (
        f"UPDATE {table} SET updated_at = %s WHERE id IN ("  # noqa: S608
        f"SELECT id FROM {table} WHERE status = %s AND updated_at < %s "
        f"ORDER BY updated_at LIMIT %s) AND status = %s AND updated_at < %s "
        f"RETURNING id"
    )
    for status, stage in STAGE_FOR_STATUS.items():
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [now, status, cutoff, limit, status, cutoff])
            leased = [row[0] for row in cursor.fetchall()]
        if leased:
            publish(stage, leased)
            counts[status] = len(leased)
    stale_refunds = list(
        Refund.objects.filter(status=Refund.Status.PENDING, created_at__lt=cutoff)
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )
    if stale_refunds:  # the gateway call is keyed by refund id: a repeat is safe
        publish("refund", stale_refunds)
        counts["refund"] = len(stale_refunds)
    return counts
