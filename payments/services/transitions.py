"""The one place a payment's status changes: a conditional update plus its event.

``UPDATE ... WHERE id IN (...) AND status = <expected>`` is the guard that makes
every stage idempotent: a second run, a redelivered task or a racing worker
finds nothing in the expected state and changes nothing.
"""

from collections.abc import Iterable, Mapping, Sequence

from django.db import connection, transaction
from django.utils import timezone

from core.sql import pg_cursor
from payments.exceptions import IllegalTransition
from payments.models import Payment
from payments.services.events import events_insert
from payments.state import EVENT_FOR_STATUS, can_transition

_UPDATABLE = frozenset(
    {
        "failure_code",
        "failure_message",
        "gateway",
        "gateway_reference",
        "fee",
        "settled_at",
    }
)


_PG_TYPES = {
    "failure_code": "text",
    "failure_message": "text",
    "gateway": "text",
    "gateway_reference": "text",
    "fee": "bigint",
    "settled_at": "timestamptz",
}


def _check(expected: str, new: str) -> None:
    if not can_transition(expected, new):
        raise IllegalTransition(f"A {expected} payment cannot become {new}.")


def transition(
    *,
    payment_ids: Sequence[str],
    expected: str,
    new: str,
    fields: Mapping[str, object] | None = None,
    per_payment: Mapping[str, Mapping[str, object]] | None = None,
    bump_attempts: bool = False,
) -> list[str]:
    """Move every payment in ``payment_ids`` that is still ``expected`` to ``new``.

    ``fields`` apply to all moved payments, ``per_payment`` to single ones.
    Writes one event per moved payment in the same transaction and returns the
    moved ids (the others were already elsewhere: not an error).
    """
    _check(expected, new)
    if not payment_ids:
        return []
    fields = dict(fields or {})
    unknown = (
        set(fields) | {k for v in (per_payment or {}).values() for k in v}
    ) - _UPDATABLE
    if unknown:
        raise ValueError(f"not updatable by a transition: {sorted(unknown)}")
    ids = list(payment_ids)
    columns: list[str] = []
    if per_payment:
        columns = sorted(next(iter(per_payment.values())))
        if set(per_payment) != set(ids) or any(
            sorted(v) != columns for v in per_payment.values()
        ):
            raise ValueError("per_payment must set the same fields for every id")
    now = timezone.now()
    sets = ["status = %s", "updated_at = %s"]
    params: list[object] = [new, now]
    for name, value in fields.items():
        sets.append(f"{name} = %s")
        params.append(value)
    if bump_attempts:
        sets.append("attempts = p.attempts + 1")
    table = Payment._meta.db_table
    postgres = connection.vendor == "postgresql"
    if postgres:
        # One statement whatever the batch size: ids and per-payment values
        # arrive as arrays and are joined back by unnest.
        sets += [f"{name} = v.{name}" for name in columns]
        arrays = [ids] + [[per_payment[pid][c] for pid in ids] for c in columns]
        # Binary arrays (%b): quoting them on the client costs ~15x the CPU.
        casts = ", ".join(["%b::text[]"] + [f"%b::{_PG_TYPES[c]}[]" for c in columns])
        sql = (
            f"UPDATE {table} AS p SET {', '.join(sets)} "  # noqa: S608
            f"FROM unnest({casts}) AS v(id{''.join(', ' + c for c in columns)}) "
            "WHERE p.id = v.id AND p.status = %s RETURNING p.id, p.merchant_id"
        )
        args = [*params, *arrays, expected]
    else:
        placeholders = ", ".join(["%s"] * len(ids))
        sql = (
            f"UPDATE {table} AS p SET {', '.join(sets)} "  # noqa: S608
            f"WHERE id IN ({placeholders}) AND status = %s RETURNING id, merchant_id"
        )
        args = [*params, *ids, expected]
    with transaction.atomic(savepoint=False):
        with pg_cursor() if postgres else connection.cursor() as cursor:
            cursor.execute(sql, args)
            moved = cursor.fetchall()
        if per_payment and not postgres:
            _apply_per_payment({pid for pid, _ in moved}, per_payment)
        _write_events(moved, new, fields, per_payment)
    return [pid for pid, _ in moved]


def _apply_per_payment(
    moved: set[str], per_payment: Mapping[str, Mapping[str, object]]
) -> None:
    """SQLite: per-payment fields of the moved rows in one bulk UPDATE (CASE WHEN)."""
    items = [(pid, values) for pid, values in per_payment.items() if pid in moved]
    if not items:
        return
    names = sorted(items[0][1])
    rows = []
    for pid, values in items:
        row = Payment(pk=pid)
        for name, value in values.items():
            setattr(row, name, value)
        rows.append(row)
    Payment.objects.bulk_update(rows, names, batch_size=500)


def _write_events(
    moved: Iterable[tuple[str, str]],
    new: str,
    fields: Mapping[str, object],
    per_payment: Mapping[str, Mapping[str, object]] | None,
) -> None:
    rows = []
    for pid, merchant_id in moved:
        data = {"status": new}
        extra = (per_payment or {}).get(pid) or fields
        for key in ("failure_code", "gateway", "fee"):
            if extra.get(key) not in (None, ""):
                data[key] = extra[key]
        rows.append((merchant_id, pid, data))
    # The pipeline hands each batch on to its next stage itself, right after
    # commit (a crash in between is caught by the sweeper), so these events are
    # written published: the relay only carries what a request accepted.
    events_insert(EVENT_FOR_STATUS[new], rows, published=True)
