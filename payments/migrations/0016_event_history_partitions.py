"""Events become append-only history, and events and webhook deliveries are
partitioned by time (monthly) for retention.

- ``payments_event`` and ``payments_webhookdelivery`` are rebuilt as
  ``PARTITION BY RANGE`` tables: the existing table is renamed, the partitioned
  one created, every month that holds rows (and the next few) gets its
  partition, plus a DEFAULT one, the rows are copied over and the old table is
  dropped, all in this one transaction (ACCESS EXCLUSIVE on both tables while
  it runs: on a large table, a maintenance window).
- The partition key is an event id: ``evt_`` ids lead with their creation time
  in milliseconds (``core.ids``), so a month is a range of ids. Events are
  partitioned by their own id, so the primary key stays ``(id)`` and the
  relay's ``id IN (...)`` prunes to one partition; deliveries by their event's
  id, so the once-per-event unique (endpoint, event) still holds across
  partitions; their primary key becomes (id, event_id) in the database (the
  partition key must be in it; Django still treats ``id`` as the key). Both
  key columns use the "C" collation: partition bounds then compare byte-wise,
  the order ids are made in, whatever the database's collation.
- An event's content can never change: a row trigger refuses any UPDATE that
  changes a column other than ``published_at`` (the outbox's publication
  state, which the relay and ``replay`` write) and every DELETE. Dropping an
  archived partition is not a row DELETE (``manage.py archive``).

Nothing references either table by foreign key (events' payment link has no
constraint; deliveries store the event id as text).
"""

from datetime import UTC, datetime

from django.db import migrations, models

import payments.models
from core.ids import id_at, id_timestamp_ms

MONTHS_AHEAD = 3
OLDEST_YEARS = 20  # rows that decode older than this go to the default partition

EVENT_COLUMNS = (
    "id",
    "type",
    "merchant_id",
    "data",
    "created_at",
    "published_at",
    "payment_id",
)
EVENT_DDL = """
CREATE TABLE payments_event (
    id varchar(40) COLLATE "C" NOT NULL,
    type varchar(64) NOT NULL,
    merchant_id varchar(40) NOT NULL,
    data jsonb NOT NULL,
    created_at timestamp with time zone NOT NULL,
    published_at timestamp with time zone NULL,
    payment_id varchar(40) NULL,
    CONSTRAINT payments_event_pkey PRIMARY KEY (id)
) PARTITION BY RANGE (id);
CREATE INDEX event_unpublished ON payments_event (id) WHERE published_at IS NULL;
"""

DELIVERY_COLUMNS = (
    "id",
    "event_id",
    "event_type",
    "payment_id",
    "payload",
    "status",
    "attempts",
    "next_attempt_at",
    "last_status_code",
    "last_error",
    "created_at",
    "delivered_at",
    "endpoint_id",
    "last_response_body",
)
DELIVERY_DDL = """
CREATE TABLE payments_webhookdelivery (
    id varchar(40) NOT NULL,
    event_id varchar(40) COLLATE "C" NOT NULL,
    event_type varchar(64) NOT NULL,
    payment_id varchar(40) NOT NULL,
    payload jsonb NOT NULL,
    status varchar(16) NOT NULL,
    attempts integer NOT NULL
        CONSTRAINT payments_webhookdelivery_attempts_check CHECK (attempts >= 0),
    next_attempt_at timestamp with time zone NULL,
    last_status_code smallint NULL
        CONSTRAINT payments_webhookdelivery_last_status_code_check
        CHECK (last_status_code >= 0),
    last_error varchar(200) NOT NULL,
    created_at timestamp with time zone NOT NULL,
    delivered_at timestamp with time zone NULL,
    endpoint_id varchar(40) NOT NULL,
    last_response_body text NOT NULL,
    CONSTRAINT payments_webhookdelivery_pkey PRIMARY KEY (id, event_id),
    CONSTRAINT webhook_delivery_once UNIQUE (endpoint_id, event_id),
    CONSTRAINT webhook_delivery_status_valid
        CHECK (status IN ('pending', 'paused', 'succeeded', 'failed')),
    CONSTRAINT webhook_delivery_pending_is_scheduled
        CHECK (NOT (status = 'pending') OR next_attempt_at IS NOT NULL),
    CONSTRAINT payments_webhookdeli_endpoint_id_1d59aa89_fk_payments_
        FOREIGN KEY (endpoint_id) REFERENCES payments_webhookendpoint (id)
        DEFERRABLE INITIALLY DEFERRED
) PARTITION BY RANGE (event_id);
CREATE INDEX webhook_delivery_endpoint_id
    ON payments_webhookdelivery (endpoint_id, id DESC);
CREATE INDEX webhook_delivery_due
    ON payments_webhookdelivery (next_attempt_at) WHERE status = 'pending';
"""

# The columns a trigger compares: every one but published_at. A test checks
# that this list is the model's (tests/payments/test_event_history.py).
EVENT_CONTENT = tuple(c for c in EVENT_COLUMNS if c != "published_at")

APPEND_ONLY = f"""
CREATE FUNCTION payments_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'payments_event is append-only: % of event % refused',
        TG_OP, OLD.id
        USING ERRCODE = 'restrict_violation',
              CONSTRAINT = 'payments_event_append_only',
              HINT = 'only published_at may change; old months leave by '
                     'manage.py archive';
END $$;

CREATE TRIGGER payments_event_no_delete BEFORE DELETE ON payments_event
    FOR EACH ROW EXECUTE FUNCTION payments_event_append_only();

-- The WHEN runs in C for every updated row; the function runs only to refuse.
CREATE TRIGGER payments_event_content_frozen BEFORE UPDATE ON payments_event
    FOR EACH ROW WHEN (
        ({", ".join(f"OLD.{c}" for c in EVENT_CONTENT)})
        IS DISTINCT FROM ({", ".join(f"NEW.{c}" for c in EVENT_CONTENT)})
    )
    EXECUTE FUNCTION payments_event_append_only();
"""

DROP_APPEND_ONLY = """
DROP TRIGGER IF EXISTS payments_event_no_delete ON payments_event;
DROP TRIGGER IF EXISTS payments_event_content_frozen ON payments_event;
DROP FUNCTION IF EXISTS payments_event_append_only();
"""


def _month_ms(year: int, month: int) -> int:
    return int(datetime(year, month, 1, tzinfo=UTC).timestamp() * 1000)


def _next(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def _month_of(value: str | None) -> tuple[int, int] | None:
    ms = id_timestamp_ms(value) if value else None
    if ms is None:
        return None
    when = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return when.year, when.month


def _months(cursor, old: str, key: str) -> list[tuple[int, int]]:
    """Every month from the oldest row's to MONTHS_AHEAD after this one."""
    now = datetime.now(UTC)
    last = (now.year, now.month)
    for _ in range(MONTHS_AHEAD):
        last = _next(*last)
    oldest = (now.year - OLDEST_YEARS, now.month)
    cursor.execute(f"SELECT min({key}), max({key}) FROM {old}")  # noqa: S608
    low, high = (_month_of(v) for v in cursor.fetchone())
    first = (now.year, now.month)
    if low is not None and oldest <= low < first:
        first = low
    if high is not None and high > last and high <= (now.year + 1, now.month):
        last = high
    months, month = [], first
    while month <= last:
        months.append(month)
        month = _next(*month)
    return months


def _rename_indexes(cursor, table: str) -> None:
    """Free the old table's index names (they are schema-wide) for the new one."""
    cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s", [table])
    for (name,) in cursor.fetchall():
        cursor.execute(f'ALTER INDEX "{name}" RENAME TO "{name[:50]}_unpart"')


def _partition(cursor, table: str, ddl: str, key: str, columns) -> None:
    old = f"{table}_unpartitioned"
    cursor.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
    cursor.execute(f"ALTER TABLE {table} RENAME TO {old}")
    _rename_indexes(cursor, old)
    cursor.execute(ddl)
    for year, month in _months(cursor, old, key):
        low = id_at("evt", _month_ms(year, month))
        high = id_at("evt", _month_ms(*_next(year, month)))
        cursor.execute(
            f"CREATE TABLE {table}_p{year:04d}_{month:02d} PARTITION OF {table} "
            f"FOR VALUES FROM ('{low}') TO ('{high}')"
        )
    cursor.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")
    cols = ", ".join(columns)
    cursor.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {old}")  # noqa: S608
    cursor.execute(f"DROP TABLE {old}")


def _unpartition(cursor, table: str, ddl: str, columns) -> None:
    """Back to one plain table (the reverse migration)."""
    old = f"{table}_partitioned"
    cursor.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
    cursor.execute(f"ALTER TABLE {table} RENAME TO {old}")
    cursor.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid "
        "WHERE i.indrelid = %s::regclass",
        [old],
    )
    for (name,) in cursor.fetchall():
        cursor.execute(f'ALTER INDEX "{name}" RENAME TO "{name[:48]}_part"')
    plain = ddl.replace("PARTITION BY RANGE (id)", "").replace(
        "PARTITION BY RANGE (event_id)", ""
    )
    plain = plain.replace("PRIMARY KEY (id, event_id)", "PRIMARY KEY (id)")
    cursor.execute(plain)
    cols = ", ".join(columns)
    cursor.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {old}")  # noqa: S608
    cursor.execute(f"DROP TABLE {old} CASCADE")


def forward(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(DROP_APPEND_ONLY)
        _partition(cursor, "payments_event", EVENT_DDL, "id", EVENT_COLUMNS)
        _partition(
            cursor,
            "payments_webhookdelivery",
            DELIVERY_DDL,
            "event_id",
            DELIVERY_COLUMNS,
        )
        cursor.execute(APPEND_ONLY)


def backward(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(DROP_APPEND_ONLY)
        _unpartition(cursor, "payments_event", EVENT_DDL, EVENT_COLUMNS)
        _unpartition(
            cursor, "payments_webhookdelivery", DELIVERY_DDL, DELIVERY_COLUMNS
        )


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0015_refund_retries"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(forward, backward)],
            state_operations=[
                migrations.AlterField(
                    model_name="event",
                    name="id",
                    field=models.CharField(
                        db_collation="C",
                        default=payments.models.evt_id,
                        editable=False,
                        max_length=40,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                migrations.AlterField(
                    model_name="webhookdelivery",
                    name="event_id",
                    field=models.CharField(db_collation="C", max_length=40),
                ),
            ],
        ),
    ]
