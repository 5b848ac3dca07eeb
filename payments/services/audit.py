"""The events are the payments' audited history: fold them, compare with the rows.

Each payment's events (``payment.*``, and its refunds' ``refund.*``), in id
order, imply a status (each step a move the state machine allows, starting
from the status no move leads to), an amount and currency (the created
event's), a fee (the last event that names one) and, through its refunds
(each folded the same way), a refunded total: every refund not failed holds
its amount. ``audit_events`` compares that with the payments and refunds
tables and reports every divergence with the payment's event trail.

Everything is derived from the declared state machine (``payments.state``),
so a new status needs no edit here. It streams: one ordered query through a
server-side cursor, one payment's rows at a time, so it runs on millions of
payments with flat memory; payment and events are read in one snapshot (a
stage writes both in one transaction), so it is also exact on a live system.

Payments older than the oldest event partition still kept (older months were
archived: ``services.archive``) are not audited: their history is in the
archive files.
"""

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection, transaction

from core.ids import id_at
from payments.models import Event, Payment, Refund
from payments.services.partitions import oldest_month
from payments.state import (
    EVENT_FOR_REFUND_STATUS,
    EVENT_FOR_STATUS,
    OPERATOR_TRANSITIONS,
    REFUND_TRANSITIONS,
    TRANSITIONS,
    RefundStatus,
    can_transition,
)


def _initial(transitions: dict, *extra: dict) -> str:
    """The one status no move leads to: where every history starts."""
    targets = {s for t in (transitions, *extra) for nxt in t.values() for s in nxt}
    starts = [s for s in transitions if s not in targets]
    if len(starts) != 1:
        raise AssertionError(f"the state machine has starts {starts}, not one")
    return str(starts[0])


INITIAL = _initial(TRANSITIONS, OPERATOR_TRANSITIONS)
REFUND_INITIAL = _initial(REFUND_TRANSITIONS)
# Plain strings (not the enums): they are printed, and compared with rows.
STATUS_FOR_EVENT = {event: str(status) for status, event in EVENT_FOR_STATUS.items()}
REFUND_STATUS_FOR_EVENT = {
    event: str(status) for status, event in EVENT_FOR_REFUND_STATUS.items()
}
# A refund in any other status holds its amount in ``amount_refunded``.
REFUND_RELEASED = frozenset({RefundStatus.FAILED})

# Events of a payment created at T are written at T or later, by processes
# whose clocks may lag a little: ``--since`` reads events from this earlier.
CLOCK_SKEW = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class TrailEvent:
    id: str
    type: str
    created_at: datetime
    data: dict

    def __str__(self) -> str:
        when = self.created_at.isoformat(timespec="milliseconds")
        data = json.dumps(self.data, sort_keys=True, separators=(",", ":"))
        return f"{when} {self.id} {self.type} {data}"


@dataclass(frozen=True, slots=True)
class Divergence:
    payment_id: str
    problems: tuple[str, ...]
    trail: tuple[TrailEvent, ...]

    def __str__(self) -> str:
        lines = [f"{self.payment_id}:"]
        lines += [f"  - {p}" for p in self.problems]
        lines += [f"    {e}" for e in self.trail] or ["    (no events)"]
        return "\n".join(lines)


@dataclass
class AuditReport:
    since: datetime | None  # payments created at/after this were audited
    payments: int = 0
    refunds: int = 0
    events: int = 0
    divergences: int = 0
    examples: list[Divergence] = field(default_factory=list)  # the first few

    @property
    def ok(self) -> bool:
        return self.divergences == 0

    def summary(self) -> str:
        since = self.since.isoformat() if self.since else "the beginning"
        return (
            f"{self.payments} payments, {self.refunds} refunds, {self.events} "
            f"events since {since}: {self.divergences} divergence(s)"
        )


@dataclass(frozen=True, slots=True)
class _Row:
    id: str
    status: str
    amount: int
    currency: str
    amount_refunded: int
    fee: int | None
    refunds: list  # [[id, status, amount], ...]


def _fold_payment(row: _Row, trail: list[TrailEvent]) -> list[str]:
    problems = []
    status = amount = currency = fee = None
    refunds: dict[str, list] = {}  # refund id -> [status, amount]
    for event in trail:
        if event.type in STATUS_FOR_EVENT:
            new = STATUS_FOR_EVENT[event.type]
            if status is None:
                if new != INITIAL:
                    problems.append(
                        f"its history starts with {event.type} ({event.id}), "
                        f"not {EVENT_FOR_STATUS[INITIAL]}"
                    )
                amount, currency = event.data.get("amount"), event.data.get("currency")
            elif not can_transition(status, new, operator=True):
                problems.append(
                    f"{event.type} ({event.id}) follows {status}: a move the "
                    "state machine does not allow"
                )
            status = new
            if event.data.get("fee") is not None:
                fee = event.data["fee"]
        elif event.type in REFUND_STATUS_FOR_EVENT:
            problems += _fold_refund(event, refunds)
    if status is None:
        problems.append(f"no {EVENT_FOR_STATUS[INITIAL]} event: its history is missing")
        return problems
    if status != row.status:
        problems.append(f"status is {row.status!r}, its events say {status!r}")
    if (amount, currency) != (row.amount, row.currency):
        problems.append(
            f"amount is {row.amount} {row.currency}, its events say {amount} {currency}"
        )
    if fee is not None and fee != row.fee:
        problems.append(f"fee is {row.fee}, its events say {fee}")
    rows = {r[0]: (r[1], r[2]) for r in row.refunds or ()}
    for refund_id in sorted(set(rows) | set(refunds)):
        said, stored = refunds.get(refund_id), rows.get(refund_id)
        if stored is None:
            problems.append(f"refund {refund_id} has events but no row")
        elif said is None:
            problems.append(f"refund {refund_id} ({stored[0]}) has no events")
        elif tuple(said) != stored:
            problems.append(
                f"refund {refund_id} is {stored[0]} of {stored[1]}, its events "
                f"say {said[0]} of {said[1]}"
            )
    refunded = sum(a for s, a in refunds.values() if s not in REFUND_RELEASED)
    if refunded != row.amount_refunded:
        problems.append(
            f"amount_refunded is {row.amount_refunded}, its refunds' events "
            f"say {refunded}"
        )
    return problems


def _fold_refund(event: TrailEvent, refunds: dict[str, list]) -> list[str]:
    refund_id = event.data.get("refund")
    new = REFUND_STATUS_FOR_EVENT[event.type]
    if not refund_id:
        return [f"{event.type} ({event.id}) names no refund"]
    if refund_id not in refunds:
        refunds[refund_id] = [new, event.data.get("amount")]
        if new != REFUND_INITIAL:
            return [
                f"refund {refund_id}'s history starts with {event.type} "
                f"({event.id}), not {EVENT_FOR_REFUND_STATUS[REFUND_INITIAL]}"
            ]
        return []
    state = refunds[refund_id]
    problems = []
    if new not in REFUND_TRANSITIONS.get(state[0], ()):
        problems.append(
            f"{event.type} ({event.id}) follows refund {refund_id} {state[0]}: "
            "a move the state machine does not allow"
        )
    state[0] = new
    return problems


def _json(value):
    return json.loads(value) if isinstance(value, str | bytes) else value


def _stream_sql() -> str:
    p, e, r = Payment._meta.db_table, Event._meta.db_table, Refund._meta.db_table
    return (
        "SELECT p.id, p.status, p.amount, p.currency, p.amount_refunded, p.fee, "  # noqa: S608
        "rf.refunds, e.id, e.type, e.created_at, e.data "
        f"FROM {p} p "
        "LEFT JOIN LATERAL (SELECT json_agg(json_build_array(id, status, amount) "
        f"ORDER BY id) AS refunds FROM {r} WHERE payment_id = p.id) rf ON true "
        f"LEFT JOIN {e} e ON e.payment_id = p.id AND e.id >= %(events_from)s "
        "AND e.type = ANY(%(types)s) "
        "WHERE p.id >= %(payments_from)s "
        "ORDER BY p.id, e.id"
    )


def _orphans_sql() -> str:
    p, e = Payment._meta.db_table, Event._meta.db_table
    return (
        f"SELECT e.payment_id, e.id, e.type, e.created_at, e.data FROM {e} e "  # noqa: S608
        f"WHERE e.id >= %(events_from)s AND e.payment_id IS NOT NULL "
        f"AND NOT EXISTS (SELECT 1 FROM {p} p WHERE p.id = e.payment_id) "
        "ORDER BY e.payment_id, e.id"
    )


def _groups(cursor, itersize: int) -> Iterator[tuple[_Row, list[TrailEvent]]]:
    """(payment row, its events) per payment, from the ordered stream."""
    current, trail = None, []
    while rows := cursor.fetchmany(itersize):
        for r in rows:
            if current is None or r[0] != current.id:
                if current is not None:
                    yield current, trail
                current, trail = _Row(*r[:6], _json(r[6])), []
            if r[7] is not None:
                trail.append(TrailEvent(r[7], r[8], r[9], _json(r[10]) or {}))
    if current is not None:
        yield current, trail


def audit_events(
    *,
    since: datetime | None = None,
    report: Callable[[Divergence], None] = lambda _: None,
    itersize: int = 5000,
    keep_examples: int = 20,
) -> AuditReport:
    """Fold every payment created at/after ``since`` (default: all that are
    still in the database) and its refunds from their events; ``report`` each
    divergence as it is found. ``AuditReport.ok`` says whether all agree.

    This is the function the bench and the drill call after a run."""
    start = since
    horizon = oldest_month()
    if horizon is not None and (start is None or start < horizon.start()):
        start = horizon.start()
    result = AuditReport(since=start)
    start_ms = int(start.timestamp() * 1000) if start else 0
    skew_ms = int(CLOCK_SKEW.total_seconds() * 1000)
    params = {
        "payments_from": id_at("pay", start_ms),
        "events_from": id_at("evt", max(0, start_ms - skew_ms)),
        "types": [*STATUS_FOR_EVENT, *REFUND_STATUS_FOR_EVENT],
    }

    def found(divergence: Divergence) -> None:
        result.divergences += 1
        if len(result.examples) < keep_examples:
            result.examples.append(divergence)
        report(divergence)

    in_transaction = connection.in_atomic_block
    with transaction.atomic():
        if not in_transaction:  # one snapshot for both queries
            with connection.cursor() as cursor:
                cursor.execute(
                    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
                )
        connection.ensure_connection()
        raw = connection.connection  # psycopg's, for a server-side cursor
        with connection.wrap_database_errors:
            with raw.cursor(name="surge_audit_events") as cursor:
                cursor.execute(_stream_sql(), params)
                for row, trail in _groups(cursor, itersize):
                    result.payments += 1
                    result.refunds += len(row.refunds or ())
                    result.events += len(trail)
                    problems = _fold_payment(row, trail)
                    if problems:
                        found(Divergence(row.id, tuple(problems), tuple(trail)))
            with raw.cursor() as cursor:
                cursor.execute(_orphans_sql(), params)
                orphan, trail = None, []
                for pid, *event in [*cursor.fetchall(), (None,)]:
                    if pid != orphan and orphan is not None:
                        found(
                            Divergence(
                                orphan,
                                ("events for a payment that is not in the table",),
                                tuple(trail),
                            )
                        )
                        trail = []
                    orphan = pid
                    if pid is not None:
                        eid, etype, created_at, data = event
                        trail.append(TrailEvent(eid, etype, created_at, _json(data)))
    return result
