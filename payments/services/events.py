"""Writing outbox events in bulk: the hot path writes several per payment."""

import time
from collections.abc import Sequence

from django.db import connection
from django.utils import timezone

from core import jsoncodec
from core.ids import new_id
from core.sql import pg_cursor
from payments.models import Event


def events_insert(
    event_type: str, rows: Sequence[tuple[str, str, dict]], *, published: bool = False
) -> None:
    """Insert one ``event_type`` event per (merchant_id, payment_id, data) row.

    ``published=True`` for events whose work the writer hands on itself after
    commit (stage to stage): the relay need not send them.

    PostgreSQL: one INSERT ... SELECT FROM unnest(arrays), a handful of
    parameters whatever the count (Django's bulk_create costs ~10x the CPU),
    sent as binary arrays (``core.sql``: quoting them cost ~15x more again).
    """
    if not rows:
        return
    if connection.vendor != "postgresql":
        Event.objects.bulk_create(
            [
                Event(
                    type=event_type,
                    merchant_id=m,
                    payment_id=p,
                    data=d,
                    published_at=timezone.now() if published else None,
                )
                for m, p, d in rows
            ],
            batch_size=1000,
        )
        return
    now = timezone.now()
    ids = [new_id("evt") for _ in rows]
    merchants = [m for m, _, _ in rows]
    payments = [p for _, p, _ in rows]
    data = [jsoncodec.compact(d) for _, _, d in rows]
    with pg_cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Event._meta.db_table} "  # noqa: S608
            "(id, type, merchant_id, payment_id, data, created_at, published_at) "
            "SELECT v.id, %s, v.merchant_id, v.payment_id, v.data::jsonb, %s, %s "
            "FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[]) "
            "AS v(id, merchant_id, payment_id, data)",
            [
                event_type,
                now,
                now if published else None,
                ids,
                merchants,
                payments,
                data,
            ],
        )


NOTIFY_CHANNEL = "surge_outbox"
# NOTIFY serializes the commits of the transactions that send it, so each
# process sends at most one per window; the relay lingers longer than the
# window after a wake-up, so events written in between leave with that batch
# (and its poll is the fallback).
WAKE_WINDOW_SECONDS = 0.02
_last_wake = 0.0


def wake_due() -> bool:
    """Whether this process should send the relays a wake-up now (at most one
    per window); True claims the window. A caller that then sends none (its
    statement inserted nothing) gives it back with ``wake_not_sent``."""
    global _last_wake
    now = time.monotonic()
    if now - _last_wake < WAKE_WINDOW_SECONDS:
        return False
    _last_wake = now
    return True


def wake_not_sent() -> None:
    """The claimed wake-up was not sent: the next event sends one."""
    global _last_wake
    _last_wake = 0.0


def wake_relay() -> None:
    """Ask PostgreSQL to wake the relays when the current transaction commits."""
    if connection.vendor != "postgresql" or not wake_due():
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, '')", [NOTIFY_CHANNEL])
