"""Dispatch: outbox events -> one ``WebhookDelivery`` per (endpoint, event).

``dispatch`` reads the ``Event`` table (the outbox; ``published_at`` belongs to
the relay and is not used) behind a per-endpoint cursor, and never past the
commit horizon (``horizon_ms``), so an event committed late is not skipped.
"""

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from core.ids import id_at
from payments.models import (
    Event,
    Payment,
    Refund,
    WebhookDelivery,
    WebhookEndpoint,
    whd_id,
)
from payments.rendering import payment_render, refund_render

logger = logging.getLogger(__name__)

# --- Clock ------------------------------------------------------------------


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- Events -> deliveries ----------------------------------------------------


def horizon_ms() -> int | None:
    """The millisecond before which every event is committed (or never will be).

    Event ids are made by the writer (``new_id``: its clock, before or during
    its transaction) but become visible at commit, which can come later and in
    another order. A cursor that jumped past an id whose transaction had not
    committed yet would skip that event forever. So dispatch only reads events
    older than the start of the oldest transaction still in progress that has
    written something (``pg_stat_activity.backend_xid`` is set at the first
    write; ``xact_start`` is when it began, so its ids are not older), other than
    our own, in this database; and never newer than now. The margin
    (``WEBHOOK_HORIZON_MARGIN_SECONDS``) covers clock skew between application
    servers and the database and the moment between making an id in Python and
    the INSERT that assigns the transaction its xid. A transaction that stays
    open holds webhooks back for as long (logged past a minute), never loses
    one.

    Returns None when a writing transaction's start is hidden from us (the
    database role lacks ``pg_read_all_stats``): nothing can be proven, so
    nothing is dispatched.
    """
    now = now_ms()
    margin = round(settings.WEBHOOK_HORIZON_MARGIN_SECONDS * 1000)
    with connection.cursor() as cursor:
        # pg_stat_activity is a snapshot taken once per transaction: refresh it.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FILTER (WHERE xact_start IS NULL), min(xact_start), "
            "(array_agg(pid ORDER BY xact_start))[1] FROM pg_stat_activity "
            "WHERE backend_xid IS NOT NULL AND datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        hidden, oldest, pid = cursor.fetchone()
    if hidden:
        logger.warning(
            "webhook dispatch waits: %d writing transaction(s) whose start is "
            "hidden (grant pg_read_all_stats to the application role)",
            hidden,
        )
        return None
    horizon = now
    if oldest is not None:
        horizon = min(horizon, int(oldest.timestamp() * 1000))
        if now - horizon > 60_000:
            logger.warning(
                "webhook dispatch held back %.0f s by the transaction of pid %s",
                (now - horizon) / 1000,
                pid,
            )
    return horizon - margin


def dispatch(*, batch_size: int = 2000, max_rounds: int = 20) -> dict[str, int]:
    """Turn new events of every active endpoint's merchant into deliveries."""
    totals: Counter[str] = Counter()
    for _ in range(max_rounds):
        events, deliveries, more = _dispatch_round(batch_size)
        totals["events"] += events
        totals["deliveries"] += deliveries
        if not more:
            break
    return dict(totals)


def _dispatch_round(batch_size: int) -> tuple[int, int, bool]:
    """One transaction: lock the endpoints, read events past their cursors up to
    the horizon, insert deliveries (ON CONFLICT DO NOTHING), advance cursors.

    ``FOR UPDATE SKIP LOCKED`` on the endpoints keeps two overlapping runs off
    the same endpoint; the unique (endpoint, event) is the last guard.
    """
    with transaction.atomic():
        horizon = horizon_ms()
        if horizon is None:
            return 0, 0, False
        below = id_at("evt", horizon)  # events with a smaller id are final
        top = id_at("evt", horizon - 1, last=True)  # the largest such id
        endpoints = list(
            WebhookEndpoint.objects.select_for_update(skip_locked=True)
            .filter(status=WebhookEndpoint.Status.ACTIVE, cursor__lt=top)
            .only("id", "merchant_id", "enabled_events", "cursor")
        )
        if not endpoints:
            return 0, 0, False
        by_merchant: dict[str, list[WebhookEndpoint]] = defaultdict(list)
        for endpoint in endpoints:
            by_merchant[endpoint.merchant_id].append(endpoint)
        rows = list(
            Event.objects.filter(
                merchant_id__in=list(by_merchant),
                id__gt=min(e.cursor for e in endpoints),
                id__lt=below,
            )
            .order_by("id")
            .values_list(
                "id", "type", "merchant_id", "payment_id", "data", "created_at"
            )[:batch_size]
        )
        more = len(rows) == batch_size
        bound = rows[-1][0] if more else top
        wanted = [
            (endpoint, row)
            for row in rows
            for endpoint in by_merchant[row[2]]
            if row[0] > endpoint.cursor
            and (not endpoint.enabled_events or row[1] in endpoint.enabled_events)
        ]
        payloads = event_payloads({row[0]: row for _, row in wanted}.values())
        now = timezone.now()
        deliveries_create(
            [(endpoint.pk, row) for endpoint, row in wanted], payloads, now
        )
        WebhookEndpoint.objects.filter(
            pk__in=[e.pk for e in endpoints], cursor__lt=bound
        ).update(cursor=bound)
    return len(rows), len(wanted), more


def deliveries_create(
    wanted: Sequence[tuple[str, tuple]], payloads: dict[str, dict], now
) -> None:
    """A pending delivery, due ``now``, for each (endpoint id, event row); one
    that exists already (endpoint, event) is left as it is."""
    # Ids of one millisecond sort randomly: hand them out sorted, so the
    # deliveries list (newest first, by id) follows the events' order.
    ids = sorted(whd_id() for _ in wanted)
    WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(
                id=delivery_id,
                endpoint_id=endpoint_id,
                event_id=row[0],
                event_type=row[1],
                payment_id=row[3] or "",
                payload=payloads[row[0]],
                next_attempt_at=now,
            )
            for delivery_id, (endpoint_id, row) in zip(ids, wanted, strict=True)
        ],
        batch_size=1000,
        ignore_conflicts=True,
    )


def event_payloads(rows: Iterable[tuple]) -> dict[str, dict]:
    """Event id -> ``{id, object, type, created, data: {object}}`` for rows of
    (id, type, merchant_id, payment_id, data, created_at), the object rendered
    as the API renders it now (a payment, or a refund for refund events).
    Payments hold only a token id; no card data can appear. The webhook body
    and the events API."""
    rows = list(rows)
    refund_ids = {r[4].get("refund") for r in rows if r[1].startswith("refund.")}
    payment_ids = {r[3] for r in rows if r[3]}
    refunds = {r.pk: r for r in Refund.objects.filter(pk__in=refund_ids - {None})}
    payments = {p.pk: p for p in Payment.objects.filter(pk__in=payment_ids)}
    out = {}
    for event_id, event_type, _merchant, payment_id, data, created_at in rows:
        refund = refunds.get((data or {}).get("refund"))
        if refund is not None:
            obj = refund_render(refund)
        elif payment_id in payments:
            obj = payment_render(payments[payment_id])
        else:
            obj = {"id": payment_id, "object": "payment"}
        out[event_id] = {
            "id": event_id,
            "object": "event",
            "type": event_type,
            "created": int(created_at.timestamp()),
            "data": {"object": obj},
        }
    return out


def events_render(events: Iterable[Event]) -> list[dict]:
    """``Event`` rows as the events API shows them (the webhook body)."""
    rows = [
        (e.pk, e.type, e.merchant_id, e.payment_id, e.data, e.created_at)
        for e in events
    ]
    payloads = event_payloads(rows)
    return [payloads[row[0]] for row in rows]
