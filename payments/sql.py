"""The hot path's hand-written SQL, in one place: accept, batch insert,
transition, events, the relay's claim and the sweeper's lease.

Each statement's column list comes from one spec derived from the models
(``TableSpec``): a new Payment field with a default is written by intake and
by batches as the ORM would write it, with no edit here. A field of a type
the spec does not know fails at import, in every process, at once.

Statements run on Django's connection through ``core.sql.pg_cursor``
(server-side binding): batches travel as binary arrays (``%b``) and are
joined back with ``unnest``, a handful of parameters whatever the count.
"""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, make_dataclass
from datetime import datetime

from django.db import models

from core import jsoncodec
from core.ids import new_id
from core.sql import pg_cursor
from payments.models import Event, IdempotencyKey, OpenPayment, Payment, VelocityEntry
from payments.state import EVENT_FOR_STATUS, PaymentStatus

# Django field type -> the PostgreSQL type a value of it is sent and cast as.
_PG_TYPES = {
    "CharField": "text",
    "TextField": "text",
    "BigIntegerField": "bigint",
    "IntegerField": "integer",
    "PositiveIntegerField": "integer",
    "PositiveSmallIntegerField": "smallint",
    "BigAutoField": "bigint",
    "BooleanField": "boolean",
    "DateTimeField": "timestamptz",
    "JSONField": "jsonb",
}


class JSONText(str):
    """A JSON document already encoded (compact): sent as it is. A stage that
    writes one document to many rows encodes it once."""


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED = _Required()  # a column with no default: every insert must give it


@dataclass(frozen=True, slots=True)
class Column:
    attname: str  # the model's attribute (``merchant_id`` for a foreign key)
    column: str  # the database column
    pg_type: str  # what a value is cast to
    default: object  # the model's default, None for a nullable field, or REQUIRED

    @property
    def wire_type(self) -> str:
        """The array element type a batch of values travels as (JSON as text)."""
        return "text" if self.pg_type == "jsonb" else self.pg_type

    def cast(self, expr: str) -> str:
        return f"{expr}::{self.pg_type}"

    def wire(self, value: object) -> object:
        """A value as it travels: JSON documents as compact text."""
        if self.pg_type != "jsonb" or isinstance(value, JSONText):
            return value
        return jsoncodec.compact(value)


def _pg_type(f: models.Field) -> str:
    internal = f.target_field.get_internal_type() if f.is_relation else None
    internal = internal or f.get_internal_type()
    try:
        return _PG_TYPES[internal]
    except KeyError:
        raise TypeError(
            f"{f.model.__name__}.{f.name}: no PostgreSQL type for {internal} in "
            "payments/sql.py"
        ) from None


def _default(f: models.Field) -> object:
    if f.has_default():
        return f.get_default()
    return None if f.null else REQUIRED


@dataclass(frozen=True)
class TableSpec:
    table: str
    columns: dict[str, Column] = field(default_factory=dict)

    @classmethod
    def of(cls, model: type[models.Model]) -> "TableSpec":
        return cls(
            model._meta.db_table,
            {
                f.attname: Column(f.attname, f.column, _pg_type(f), _default(f))
                for f in model._meta.concrete_fields
                if not isinstance(f, models.AutoField)  # the sequence fills it
            },
        )

    def insert_values(self, given: Mapping[str, str], *, what: str) -> tuple[str, str]:
        """(column list, value list) for an INSERT that sets ``given``
        (attname -> SQL expression) and every other column to its default."""
        names, values = [], []
        for name, col in self.columns.items():
            if name in given:
                expr = given[name]
            elif col.default is REQUIRED:
                raise TypeError(f"{what} sets no value for {self.table}.{col.column}")
            else:
                expr = col.cast(_literal(col.wire(col.default)))
            names.append(f'"{col.column}"')
            values.append(expr)
        unknown = set(given) - set(self.columns)
        if unknown:
            raise TypeError(f"{what}: no such columns {sorted(unknown)}")
        return ", ".join(names), ", ".join(values)

    def unnest_insert(
        self, arrays: Sequence[str], constants: Mapping[str, str], *, what: str
    ) -> str:
        """INSERT ... SELECT FROM unnest: one binary array parameter per name in
        ``arrays`` (``%(name)b``), ``constants`` (attname -> SQL) for the
        whole batch, and the model's defaults for every other column."""
        given = {name: self.columns[name].cast(f"v.{name}") for name in arrays}
        cols, vals = self.insert_values({**given, **constants}, what=what)
        sources = ", ".join(
            f"%({name})b::{self.columns[name].wire_type}[]" for name in arrays
        )
        return (
            f"INSERT INTO {self.table} ({cols}) SELECT {vals} "  # noqa: S608
            f"FROM unnest({sources}) AS v({', '.join(arrays)})"
        )


def _literal(value: object) -> str:
    """A model default as an SQL literal (constants from code, never input)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, str):
        return "'" + str(value).replace("'", "''") + "'"
    if isinstance(value, dict | list):
        return _literal(jsoncodec.compact(value))
    raise TypeError(f"no SQL literal for a default of type {type(value).__name__}")


PAYMENT = TableSpec.of(Payment)
EVENT = TableSpec.of(Event)
IDEMPOTENCY_KEY = TableSpec.of(IdempotencyKey)


def _row_field(col: Column):
    if isinstance(col.default, dict | list):
        return (col.attname, object, field(default_factory=type(col.default)))
    return (col.attname, object, field(default=col.default))


# A payment as intake accepts it, without a model instance (making one costs
# more than rendering it): every Payment field, with the model's defaults.
PaymentRow = make_dataclass(
    "PaymentRow",
    [(c.attname, object) for c in PAYMENT.columns.values() if c.default is REQUIRED]
    + [_row_field(c) for c in PAYMENT.columns.values() if c.default is not REQUIRED],
    slots=True,
)

NOTIFY_CHANNEL = "surge_outbox"

# --- Accept: one statement, one round trip --------------------------------------

# What a single payment's request gives; the rest are the model's defaults.
ACCEPT_GIVEN = (
    "id",
    "amount",
    "currency",
    "source_id",
    "description",
    "metadata",
    "customer",
)


def _accept_sql() -> str:
    key_cols, key_vals = IDEMPOTENCY_KEY.insert_values(
        {
            "merchant_id": "%(merchant_id)s",
            "key": "%(key)s",
            "method": "'POST'",
            "path": "%(path)s",
            "request_hash": "%(request_hash)s",
            "response_status": "202",
            "response_body": "%(response_body)s::jsonb",
            "created_at": "%(now)s",
            "expires_at": "%(expires_at)s",
        },
        what="accept",
    )
    updates = ", ".join(
        f"{c.column} = EXCLUDED.{c.column}"
        for name, c in IDEMPOTENCY_KEY.columns.items()
        if name not in ("id", "merchant_id", "key")
    )
    given = {name: PAYMENT.columns[name].cast(f"%({name})s") for name in ACCEPT_GIVEN}
    given |= {
        "merchant_id": "k.merchant_id",
        "created_at": "k.created_at",
        "updated_at": "k.created_at",
    }
    pay_cols, pay_vals = PAYMENT.insert_values(given, what="accept")
    evt_cols, evt_vals = EVENT.insert_values(
        {
            "id": "%(event_id)s",
            "type": _literal(EVENT_FOR_STATUS[PaymentStatus.PENDING]),
            "merchant_id": "p.merchant_id",
            "payment_id": "p.id",
            "data": "%(event_data)s::jsonb",
            "created_at": "p.created_at",
        },
        what="accept",
    )
    # The idempotency record goes first (ON CONFLICT on the key: a live key
    # inserts nothing, an expired one is taken over); the payment and its
    # event are inserted only from the row that insert returned. A concurrent
    # request with the same key waits on the key's unique index until the
    # first commits, inserts nothing, and replays the stored response. The
    # relays' wake-up (a NOTIFY sent at commit, only if the payment went in)
    # rides in the same statement; the last SELECT names ``n`` because a
    # plain SELECT in a WITH runs only when referenced.
    return f"""
WITH k AS (
    INSERT INTO {IDEMPOTENCY_KEY.table} AS k ({key_cols}) VALUES ({key_vals})
    ON CONFLICT (merchant_id, "key") DO UPDATE SET {updates}
    WHERE k.expires_at <= EXCLUDED.created_at
    RETURNING k.merchant_id, k.created_at
), p AS (
    INSERT INTO {PAYMENT.table} ({pay_cols}) SELECT {pay_vals} FROM k
    RETURNING id, merchant_id, created_at
), e AS (
    INSERT INTO {EVENT.table} ({evt_cols}) SELECT {evt_vals} FROM p
), n AS (
    SELECT pg_notify({_literal(NOTIFY_CHANNEL)}, '') FROM p WHERE %(notify)s
)
SELECT count(*), (SELECT count(*) FROM n) FROM p
"""  # noqa: S608 (names and constants from the models only)


ACCEPT_SQL = _accept_sql()


def accept(
    *,
    payment: object,
    key: str,
    path: str,
    request_hash: str,
    response_body: dict,
    expires_at: datetime,
    event_id: str,
    notify: bool,
    traceparent: str | None = None,
) -> bool:
    """Run the accept statement for ``payment`` (a ``PaymentRow``); True if the
    payment was inserted, False if the key was already live. Prepared once per
    connection."""
    params = {
        name: PAYMENT.columns[name].wire(getattr(payment, name))
        for name in ACCEPT_GIVEN
    }
    params.update(
        merchant_id=payment.merchant_id,
        key=key,
        path=path,
        request_hash=request_hash,
        response_body=json.dumps(response_body),
        now=payment.created_at,
        expires_at=expires_at,
        event_id=event_id,
        event_data=jsoncodec.compact(
            created_event_data(payment.amount, payment.currency, traceparent)
        ),
        notify=notify,
    )
    with pg_cursor() as cursor:
        cursor.execute(ACCEPT_SQL, params, prepare=True)
        return cursor.fetchone()[0] == 1


def created_event_data(amount: int, currency: str, traceparent: str | None) -> dict:
    """A ``payment.created`` event's data; the request's trace when tracing."""
    data = {"amount": amount, "currency": currency}
    if traceparent:
        data["traceparent"] = traceparent
    return data


# --- Batch insert ----------------------------------------------------------------

# What a batch item gives, one array each; merchant, batch and time are one
# value for the whole batch; the rest are the model's defaults.
BATCH_GIVEN = (
    "id",
    "amount",
    "currency",
    "source_id",
    "reference",
    "description",
    "metadata",
    "customer",
)


BATCH_INSERT_SQL = PAYMENT.unnest_insert(
    BATCH_GIVEN,
    {
        "merchant_id": "%(merchant_id)s",
        "batch_id": "%(batch_id)s",
        "created_at": "%(now)s",
        "updated_at": "%(now)s",
    },
    what="batch insert",
)


def payments_insert(
    payments: Sequence[Payment], *, merchant_id: str, batch_id: str, now: datetime
) -> None:
    """A batch's payments in one INSERT ... SELECT FROM unnest: the same row
    ``bulk_create`` would write (a plain INSERT, so the table's triggers fire)."""
    params: dict[str, object] = {
        name: [PAYMENT.columns[name].wire(getattr(p, name)) for p in payments]
        for name in BATCH_GIVEN
    }
    params.update(merchant_id=merchant_id, batch_id=batch_id, now=now)
    with pg_cursor() as cursor:
        cursor.execute(BATCH_INSERT_SQL, params)


def merchant_has(
    model: type[models.Model], column: str, merchant_id: str, values: set[str]
) -> set[str]:
    """The ``values`` found in ``model.column`` among the merchant's rows."""
    if not values:
        return set()  # as the ORM: an empty IN makes no query
    name = model._meta.get_field(column).column
    with pg_cursor() as cursor:
        cursor.execute(
            f"SELECT {name} FROM {model._meta.db_table} "  # noqa: S608 (names from the models)
            f"WHERE merchant_id = %s AND {name} = ANY(%b::text[])",
            [merchant_id, list(values)],
        )
        return {value for (value,) in cursor.fetchall()}


# --- Transition ------------------------------------------------------------------


def transition_update(
    *,
    ids: Sequence[str],
    expected: str,
    new: str,
    now: datetime,
    fields: Mapping[str, object],
    per_payment: Mapping[str, Mapping[str, object]] | None,
    columns: Sequence[str],
    bump_attempts: bool,
) -> list[tuple[str, str]]:
    """``UPDATE ... WHERE id = ANY(ids) AND status = expected``: the guard that
    makes every stage idempotent. Returns (id, merchant_id) of the moved rows."""
    cols = PAYMENT.columns
    sets = [f"{cols['status'].column} = %s", f"{cols['updated_at'].column} = %s"]
    params: list[object] = [new, now]
    for name, value in fields.items():
        sets.append(f"{cols[name].column} = {cols[name].cast('%s')}")
        params.append(cols[name].wire(value))
    if bump_attempts:
        sets.append("attempts = p.attempts + 1")
    sets += [
        f"{cols[name].column} = "
        + (
            f"v.{name}"
            if cols[name].wire_type == cols[name].pg_type
            else cols[name].cast(f"v.{name}")
        )
        for name in columns
    ]
    arrays = [list(ids)] + [
        [cols[c].wire(per_payment[pid][c]) for pid in ids] for c in columns
    ]
    casts = ", ".join(["%b::text[]"] + [f"%b::{cols[c].wire_type}[]" for c in columns])
    sql = (
        f"UPDATE {PAYMENT.table} AS p SET {', '.join(sets)} "  # noqa: S608
        f"FROM unnest({casts}) AS v(id{''.join(', ' + c for c in columns)}) "
        "WHERE p.id = v.id AND p.status = %s RETURNING p.id, p.merchant_id"
    )
    with pg_cursor() as cursor:
        cursor.execute(sql, [*params, *arrays, expected])
        return cursor.fetchall()


# --- Events ----------------------------------------------------------------------

_EVENTS_GIVEN = ("id", "merchant_id", "payment_id", "data")


EVENTS_INSERT_SQL = EVENT.unnest_insert(
    _EVENTS_GIVEN,
    {
        "type": "%(type)s",
        "created_at": "%(now)s",
        "published_at": "%(published_at)s::timestamptz",
    },
    what="events insert",
)


def events_insert(
    event_type: str,
    rows: Sequence[tuple[str, str | None, dict]],
    *,
    now: datetime,
    published: bool,
) -> None:
    """One ``event_type`` event per (merchant_id, payment_id, data) row."""
    with pg_cursor() as cursor:
        cursor.execute(
            EVENTS_INSERT_SQL,
            {
                "type": event_type,
                "now": now,
                "published_at": now if published else None,
                "id": [new_id("evt") for _ in rows],
                "merchant_id": [m for m, _, _ in rows],
                "payment_id": [p for _, p, _ in rows],
                "data": [jsoncodec.compact(d) for _, _, d in rows],
            },
        )


# --- The relay's claim and the sweeper's lease -----------------------------------


def claim_events(batch_size: int) -> list[tuple[str, str, str | None, dict]]:
    """Mark a batch of unpublished events published and return them as
    (id, type, payment_id, data). ``SKIP LOCKED``: several relays share the
    work; the caller's transaction commits the mark after it has published.

    The table is partitioned by id (month): ``id = ANY(array)`` finds each
    row by its partition's primary key, and the claimed ids' min and max let
    the executor skip every other month (an ``id IN (subquery)`` join was
    planned as a scan of every partition)."""
    table = EVENT.table
    with pg_cursor() as cursor:
        cursor.execute(
            f"WITH c AS MATERIALIZED (SELECT id FROM {table} "  # noqa: S608
            "WHERE published_at IS NULL ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) "
            f"UPDATE {table} SET published_at = now() "
            "WHERE id = ANY(ARRAY(SELECT id FROM c)) "
            "AND id >= (SELECT min(id) FROM c) AND id <= (SELECT max(id) FROM c) "
            "RETURNING id, type, payment_id, data",
            [batch_size],
        )
        return cursor.fetchall()


def lease_stale(
    *, statuses: Sequence[str], now: datetime, cutoff: datetime, limit: int
) -> list[tuple[str, str]]:
    """Lease (bump ``updated_at``) the open payments in ``statuses`` untouched
    since ``cutoff``; return (id, status) of each.

    The candidates come from the open-payments list (kept by triggers), so a
    sweep reads only the payments in flight, never the whole history. One
    statement: a concurrent sweep re-checks ``updated_at`` after waiting on the
    row lock, so each stale payment is leased (and re-driven) once.
    """
    table = PAYMENT.table
    sql = (
        f"UPDATE {table} SET updated_at = %(now)s WHERE id IN ("  # noqa: S608
        f"SELECT p.id FROM {OpenPayment._meta.db_table} o "
        f"JOIN {table} p ON p.id = o.payment_id "
        "WHERE o.opened_at < %(cutoff)s AND p.status = ANY(%(statuses)s) "
        "AND p.updated_at < %(cutoff)s "
        "ORDER BY p.updated_at LIMIT %(limit)s) "
        "AND status = ANY(%(statuses)s) AND updated_at < %(cutoff)s "
        "RETURNING id, status"
    )
    with pg_cursor() as cursor:
        cursor.execute(
            sql,
            {"now": now, "cutoff": cutoff, "statuses": list(statuses), "limit": limit},
        )
        return cursor.fetchall()


# --- Risk velocity (the enrich stage) ----------------------------------------------


@dataclass(frozen=True, slots=True)
class VelocityItem:
    """One payment under one velocity rule: its key (card fingerprint or
    customer reference) and the rule's window in seconds."""

    payment_id: str
    merchant_id: str
    kind: str
    key: str
    amount: int
    created_at: datetime
    window: int
    # Count at most this many earlier payments (the rule's N: enough to
    # decide), None to count them all (an amount rule needs the whole sum).
    cap: int | None = None


VELOCITY = TableSpec.of(VelocityEntry)

# Locks taken in merchant order (the subquery's), so two batches never wait on
# each other in a cycle.
_VELOCITY_LOCK_SQL = (
    "SELECT pg_advisory_xact_lock(hashtextextended('surge.velocity:' || m, 0)) "
    "FROM (SELECT m FROM unnest(%b::text[]) AS m ORDER BY m) AS ordered"
)

# For each item: how many of the key's payments (and what amount) the stage
# has seen accepted within the window before it: the table's entries (other
# batches) plus the batch's own earlier items. The batch's entries go in in
# the same statement; its snapshot does not see them, and an entry left by an
# earlier run of this batch is skipped, so a re-run counts the same.
_VELOCITY_SQL = f"""
WITH b AS (
    SELECT * FROM unnest(
        %(payment_id)b::text[], %(merchant_id)b::text[], %(kind)b::text[],
        %(key)b::text[], %(amount)b::bigint[], %(created_at)b::timestamptz[],
        %(window)b::integer[], %(cap)b::integer[]
    ) AS b(payment_id, merchant_id, kind, key, amount, created_at, window_s, cap)
), ins AS (
    INSERT INTO {VELOCITY.table}
        (merchant_id, kind, key, payment_id, amount, created_at)
    SELECT merchant_id, kind, key, payment_id, amount, created_at FROM b
    ON CONFLICT (payment_id, kind) DO NOTHING
)
SELECT b.payment_id, b.kind, e.n + i.n, e.total + i.total + b.amount
FROM b
CROSS JOIN LATERAL (
    SELECT count(*) AS n, coalesce(sum(amount), 0) AS total FROM (
        SELECT v.amount FROM {VELOCITY.table} v
        WHERE v.merchant_id = b.merchant_id AND v.kind = b.kind AND v.key = b.key
          AND v.created_at > b.created_at - make_interval(secs => b.window_s)
          AND v.created_at <= b.created_at
          AND v.payment_id <> ALL(%(payment_id)b::text[])
        LIMIT b.cap
    ) capped
) e
CROSS JOIN LATERAL (
    SELECT count(*) AS n, coalesce(sum(o.amount), 0) AS total
    FROM b o
    WHERE o.merchant_id = b.merchant_id AND o.kind = b.kind AND o.key = b.key
      AND (o.created_at, o.payment_id) < (b.created_at, b.payment_id)
      AND o.created_at > b.created_at - make_interval(secs => b.window_s)
) i
"""  # noqa: S608 (names from the models only)


def velocity_assess(
    items: Sequence[VelocityItem],
) -> dict[tuple[str, str], tuple[int, int]]:
    """(payment_id, kind) -> (payments before it in its window, amount in the
    window including its own), for a batch, and the batch's entries recorded.

    Two statements, in the caller's transaction: a per-merchant advisory lock
    (held to commit, taken in a fixed order), so that two batches of one
    merchant are counted one after the other and never miss each other; then
    the count and the insert.
    """
    if not items:
        return {}
    merchants = sorted({i.merchant_id for i in items})
    with pg_cursor() as cursor:
        cursor.execute(_VELOCITY_LOCK_SQL, [merchants])
        cursor.execute(
            _VELOCITY_SQL,
            {
                "payment_id": [i.payment_id for i in items],
                "merchant_id": [i.merchant_id for i in items],
                "kind": [i.kind for i in items],
                "key": [i.key for i in items],
                "amount": [i.amount for i in items],
                "created_at": [i.created_at for i in items],
                "window": [i.window for i in items],
                "cap": [i.cap for i in items],
            },
        )
        return {
            (pid, kind): (int(n), int(total))
            for pid, kind, n, total in cursor.fetchall()
        }


def velocity_purge(*, before: datetime, limit: int = 10_000) -> int:
    """Delete up to ``limit`` velocity entries accepted before ``before``."""
    table = VELOCITY.table
    with pg_cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} "  # noqa: S608
            "WHERE created_at < %s ORDER BY created_at LIMIT %s)",
            [before, limit],
        )
        return cursor.rowcount
