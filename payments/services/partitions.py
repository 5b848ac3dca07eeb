"""Monthly time partitions of the events and the webhook deliveries.

Both tables are ``PARTITION BY RANGE`` on an event id (``evt_`` ids lead with
their creation time, ``core.ids``): the events on their own id, the deliveries
on their event's, so a month is one id range in each and a month's deliveries
sit in the same month as their events (migration 0016).

``partitions_ensure`` (``manage.py partitions``, beat daily) creates this month
and ``SURGE_PARTITION_MONTHS_AHEAD`` after it. A row outside every month (the
job did not run for months, or an id that is no ``new_id``) lands in the
DEFAULT partition rather than failing a payment's insert; the next run moves
such rows into the month partitions it creates, and reports what stays there.
"""

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

from django.conf import settings
from django.db import connection, transaction

from core.ids import id_at
from payments.models import Event, WebhookDelivery

KEY_PREFIX = "evt"
_MONTH_NAME = re.compile(r"_p(\d{4})_(\d{2})$")


@dataclass(frozen=True, slots=True)
class PartitionedTable:
    table: str
    key: str  # the partition key: an event id


TABLES: tuple[PartitionedTable, ...] = (
    PartitionedTable(Event._meta.db_table, Event._meta.pk.column),
    PartitionedTable(
        WebhookDelivery._meta.db_table,
        WebhookDelivery._meta.get_field("event_id").column,
    ),
)


@dataclass(frozen=True, slots=True, order=True)
class Month:
    year: int
    month: int

    @classmethod
    def of(cls, day: date) -> "Month":
        return cls(day.year, day.month)

    @classmethod
    def parse(cls, text: str) -> "Month":
        """``YYYY-MM``; ValueError otherwise."""
        match = re.fullmatch(r"(\d{4})-(\d{2})", text or "")
        if not match or not 1 <= int(match[2]) <= 12:
            raise ValueError(f"{text!r} is not a month as YYYY-MM (e.g. 2026-09)")
        return cls(int(match[1]), int(match[2]))

    def next(self) -> "Month":
        if self.month == 12:
            return Month(self.year + 1, 1)
        return Month(self.year, self.month + 1)

    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    def bounds(self) -> tuple[str, str]:
        """The month's event-id range, [low, high)."""
        low = id_at(KEY_PREFIX, int(self.start().timestamp() * 1000))
        high = id_at(KEY_PREFIX, int(self.next().start().timestamp() * 1000))
        return low, high

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


def partition_name(table: str, month: Month) -> str:
    return f"{table}_p{month.year:04d}_{month.month:02d}"


def default_name(table: str) -> str:
    return f"{table}_default"


def current_month() -> Month:
    return Month.of(datetime.now(UTC).date())


def partitions_list(table: str) -> dict[Month, str]:
    """The month partitions ``table`` has now: month -> partition name."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c "
            "ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
            [table],
        )
        names = [name for (name,) in cursor.fetchall()]
    months = {}
    for name in names:
        match = _MONTH_NAME.search(name)
        if match and name == partition_name(table, Month(int(match[1]), int(match[2]))):
            months[Month(int(match[1]), int(match[2]))] = name
    return months


def oldest_month() -> Month | None:
    """The oldest month the events still hold (older ones were archived)."""
    months = partitions_list(TABLES[0].table)
    return min(months) if months else None


@dataclass
class EnsureResult:
    created: list[str]
    moved_from_default: int  # rows moved out of the default partitions
    left_in_default: dict[str, int]  # table -> rows that fit no month partition


def partitions_ensure(*, ahead: int | None = None) -> EnsureResult:
    """Create the partitions of this month and ``ahead`` after it (default
    SURGE_PARTITION_MONTHS_AHEAD) where missing, and the default partitions.
    Idempotent; concurrent runs wait for each other (an advisory lock)."""
    ahead = settings.SURGE_PARTITION_MONTHS_AHEAD if ahead is None else ahead
    if ahead < 0:
        raise ValueError("ahead must be 0 or more")
    months = [current_month()]
    for _ in range(ahead):
        months.append(months[-1].next())
    return partitions_create(months)


def partitions_create(months: list[Month]) -> EnsureResult:
    """Create each table's partition for each of ``months`` where missing (a
    past month too: restoring an archive, tests), moving any rows of those
    months out of the default partition."""
    result = EnsureResult(created=[], moved_from_default=0, left_in_default={})
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext('surge.partitions'))")
        for spec in TABLES:
            existing = partitions_list(spec.table)
            missing = sorted(m for m in set(months) if m not in existing)
            result.created += _create(cursor, spec, missing, result)
            cursor.execute(f"SELECT count(*) FROM {default_name(spec.table)}")  # noqa: S608
            left = cursor.fetchone()[0]
            if left:
                result.left_in_default[spec.table] = left
    return result


def _create(cursor, spec: PartitionedTable, missing: list[Month], result) -> list:
    table, default = spec.table, default_name(spec.table)
    cursor.execute("SELECT to_regclass(%s)", [default])
    has_default = cursor.fetchone()[0] is not None
    if not missing:
        if not has_default:
            cursor.execute(f"CREATE TABLE {default} PARTITION OF {table} DEFAULT")
            return [default]
        return []
    strays = 0
    if has_default:
        ranges = " OR ".join(f"({spec.key} >= %s AND {spec.key} < %s)" for _ in missing)
        cursor.execute(
            f"SELECT count(*) FROM {default} WHERE {ranges}",  # noqa: S608
            [b for m in missing for b in m.bounds()],
        )
        strays = cursor.fetchone()[0]
    created = []
    if strays:
        # Rows for a month that had no partition: rebuild the default rather
        # than delete from it (events refuse DELETE; a dropped table is not
        # one): detach it, create the months and a new default, route its
        # rows through the parent, drop it.
        cursor.execute(f"ALTER TABLE {table} DETACH PARTITION {default}")
        cursor.execute(f"ALTER TABLE {default} RENAME TO {default}_old")
        has_default = False
    for month in missing:
        name = partition_name(table, month)
        low, high = month.bounds()
        cursor.execute(
            f"CREATE TABLE {name} PARTITION OF {table} "
            f"FOR VALUES FROM ('{low}') TO ('{high}')"
        )
        created.append(name)
    if not has_default:
        cursor.execute(f"CREATE TABLE {default} PARTITION OF {table} DEFAULT")
        created.append(default)
    if strays:
        cursor.execute(f"INSERT INTO {table} SELECT * FROM {default}_old")  # noqa: S608
        cursor.execute(f"DROP TABLE {default}_old")
        result.moved_from_default += strays
    return created
