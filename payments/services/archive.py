"""Archive old months of events and webhook deliveries: a file, then a drop.

A month leaves as a whole (its event partition and its delivery partition
together, so a delivery never outlives its event's month), oldest first, and
never past a month that must stay: the archived history is always a prefix,
so what the database holds starts at ``partitions.oldest_month()`` and the
audit knows where its history begins.

A month stays (refused, with the reason) while any of its events belongs to a
payment that is not final, has a pending refund or an open dead letter, or
any of its deliveries is undelivered (pending or paused) or belongs to a
payment with an open dead letter.

Each partition is written with ``COPY ... TO STDOUT`` (CSV with a header,
gzip) to a temporary file under SURGE_ARCHIVE_DIR, read back and its records
counted against the partition (locked against writes, SHARE), then renamed
into place; only when every file of the month is verified are the partitions
detached and dropped, in the same transaction (a detach locks its table for a
moment; SURGE_ARCHIVE_LOCK_TIMEOUT bounds the wait). A failure anywhere drops
nothing.
"""

import csv
import gzip
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction

from core.sql import pg_cursor
from payments.models import DeadLetter, Payment, Refund, WebhookDelivery
from payments.services.partitions import (
    TABLES,
    Month,
    current_month,
    partitions_list,
)
from payments.state import NON_TERMINAL, RefundStatus

csv.field_size_limit(1 << 30)  # a payload or a response body may be long

UNDELIVERED = (WebhookDelivery.Status.PENDING, WebhookDelivery.Status.PAUSED)


class ArchiveError(Exception):
    """The archive cannot run as asked (bad month, unwritable directory)."""


@dataclass
class MonthArchive:
    month: Month
    rows: dict[str, int] = field(default_factory=dict)  # partition -> rows
    files: list[Path] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # why it stays

    @property
    def archived(self) -> bool:
        return bool(self.files) and not self.refused


def archive_months(
    *,
    before: Month,
    directory: Path | None = None,
    dry_run: bool = False,
    report: Callable[[MonthArchive], None] = lambda _: None,
) -> list[MonthArchive]:
    """Archive every month older than ``before``, oldest first, stopping at the
    first one that must stay. ``dry_run``: check and count, write nothing."""
    if before > current_month():
        raise ArchiveError(
            f"--before {before} is in the future: only months that have ended "
            f"can be archived (at most --before {current_month()})"
        )
    directory = Path(directory or settings.SURGE_ARCHIVE_DIR)
    if not dry_run:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArchiveError(f"cannot create {directory}: {exc}") from None
        if not os.access(directory, os.W_OK):
            raise ArchiveError(f"cannot write to {directory}")
    by_month: dict[Month, dict[str, str]] = {}
    for spec in TABLES:
        for month, name in partitions_list(spec.table).items():
            if month < before:
                by_month.setdefault(month, {})[spec.table] = name
    done = []
    for month in sorted(by_month):
        outcome = _archive_month(month, by_month[month], directory, dry_run)
        done.append(outcome)
        report(outcome)
        if outcome.refused:
            break
    return done


def _archive_month(
    month: Month, parts: dict[str, str], directory: Path, dry_run: bool
) -> MonthArchive:
    outcome = MonthArchive(month)
    written: list[tuple[Path, Path]] = []  # (temporary, final)
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('lock_timeout', %s, true)",
                [f"{settings.SURGE_ARCHIVE_LOCK_TIMEOUT}s"],
            )
            for name in parts.values():
                cursor.execute(f"LOCK TABLE {name} IN SHARE MODE")
            outcome.refused = _blockers(cursor, parts)
            if outcome.refused:
                return outcome
            for name in parts.values():
                cursor.execute(f"SELECT count(*) FROM {name}")  # noqa: S608
                outcome.rows[name] = cursor.fetchone()[0]
            if dry_run:
                return outcome
            for name in parts.values():
                final = directory / f"{name}.csv.gz"
                temporary = directory / f".{name}.csv.gz.partial"
                written.append((temporary, final))
                _copy_out(name, temporary)
                counted = _count_records(temporary)
                if counted != outcome.rows[name]:
                    raise ArchiveError(
                        f"{temporary} holds {counted} rows, {name} "
                        f"{outcome.rows[name]}: nothing dropped"
                    )
            for temporary, final in written:
                os.replace(temporary, final)
                outcome.files.append(final)
            for table, name in parts.items():
                cursor.execute(f"ALTER TABLE {table} DETACH PARTITION {name}")
                cursor.execute(f"DROP TABLE {name}")
    except BaseException:
        for temporary, _ in written:
            temporary.unlink(missing_ok=True)
        outcome.files = []
        raise
    return outcome


def _blockers(cursor, parts: dict[str, str]) -> list[str]:
    """Why the month must stay, in words an operator can act on."""
    reasons = []
    events = parts.get(TABLES[0].table)
    deliveries = parts.get(TABLES[1].table)
    payment, refund, letter = (
        Payment._meta.db_table,
        Refund._meta.db_table,
        DeadLetter._meta.db_table,
    )
    open_letter = DeadLetter.Status.OPEN
    by_payment = (
        "SELECT count(DISTINCT x.payment_id), min(x.payment_id) FROM {part} x "
        "JOIN {other} o ON o.{column} = x.payment_id WHERE o.status = ANY(%s)"
    )
    checks = []
    if events:
        checks += [
            ("events of payments that are not final", events, payment, "id",
             list(NON_TERMINAL)),
            ("events of payments with a pending refund", events, refund,
             "payment_id", [RefundStatus.PENDING]),
            ("events of payments with an open dead letter", events, letter,
             "payment_id", [open_letter]),
        ]  # fmt: skip
    if deliveries:
        checks.append(
            ("webhook deliveries of payments with an open dead letter",
             deliveries, letter, "payment_id", [open_letter])
        )  # fmt: skip
        cursor.execute(
            f"SELECT count(*), min(id) FROM {deliveries} "  # noqa: S608 (catalog names)
            "WHERE status = ANY(%s)",
            [list(UNDELIVERED)],
        )
        count, example = cursor.fetchone()
        if count:
            reasons.append(
                f"{count} undelivered webhook deliveries (pending or paused; "
                f"e.g. {example})"
            )
    for what, part, other, column, statuses in checks:
        sql = by_payment.format(part=part, other=other, column=column)
        cursor.execute(sql, [statuses])
        count, example = cursor.fetchone()
        if count:
            reasons.append(f"{count} {what} (e.g. {example})")
    return reasons


def _copy_out(partition: str, path: Path) -> None:
    """The partition as gzip'd CSV with a header, flushed to disk."""
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb") as out,
        pg_cursor() as cursor,
        cursor.copy(
            f"COPY (SELECT * FROM {partition} ORDER BY 1) "  # noqa: S608
            "TO STDOUT WITH (FORMAT csv, HEADER true)"
        ) as copy,
    ):
        for chunk in copy:
            out.write(chunk)
        out.close()
        raw.flush()
        os.fsync(raw.fileno())


def _count_records(path: Path) -> int:
    """CSV records in the file, its header aside (a quoted field may hold a
    newline, so records, not lines); reading it all also proves the gzip."""
    with gzip.open(path, "rt", newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        return sum(1 for _ in reader)
