"""Writing outbox events in bulk: the hot path writes several per payment."""

import time
from collections.abc import Sequence

from django.db import connection
from django.utils import timezone

from payments import sql
from payments.sql import NOTIFY_CHANNEL


def events_insert(
    event_type: str,
    rows: Sequence[tuple[str, str | None, dict]],
    *,
    published: bool = False,
) -> None:
    """Insert one ``event_type`` event per (merchant_id, payment_id, data) row,
    in one statement whatever the count.

    ``published=True`` for events whose work the writer hands on itself after
    commit (stage to stage): the relay need not send them.
    """
    if rows:
        sql.events_insert(event_type, rows, now=timezone.now(), published=published)


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
    if not wake_due():
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, '')", [NOTIFY_CHANNEL])
