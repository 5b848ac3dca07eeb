"""Reconciliation across apps: the ledger against settled payments and the
gateways' own records; every break opens a dead letter for a human.

The ledger checks itself and compares with whatever rows it is handed
(``ledger.reconcile``); this module, above the ledger, decides what it is
handed: settled payments from ``payments.selectors`` and each gateway's log
from ``gateways.services.charge_records``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable

from gateways.services import charge_records
from ledger import reconcile as ledger_reconcile
from ledger.reconcile import ReconcileReport, RecordSource
from payments.selectors import settled_payments
from payments.services.deadletters import dead_letter_record

DEAD_LETTER_STAGE = "reconcile"


def default_record_source() -> RecordSource:
    """The gateways' own logs, as (gateway, reference, kind, amount, currency).

    Only money that moved counts (declines and refused refunds are not), and the
    reference is ours: the payment id for a charge, the refund id for a refund.
    """

    def source(name: str, since: dt.datetime | None):
        for r in charge_records(name, since):
            if r.status != "succeeded":
                continue
            ref = r.payment_id if r.kind == "charge" else r.idempotency_key
            yield (r.gateway, ref, r.kind, r.amount, r.currency)

    return source


def reconcile(
    *,
    since: dt.datetime | None = None,
    settled: Callable[..., Iterable[tuple]] | None = None,
    record_source: RecordSource | bool | None = True,
    progress: bool = False,
) -> ReconcileReport:
    """Run the ledger's checks against settled payments and gateway records;
    read-only. ``record_source=True`` reads ``gateways.services.charge_records``;
    ``None``/``False`` skips the gateway comparison (with a warning)."""
    if settled is None:
        settled = settled_payments
    if record_source is True:
        record_source = default_record_source()
    report = ledger_reconcile.reconcile(
        settled=settled,
        record_source=record_source or None,
        since=since,
        progress=progress,
    )
    if not record_source:
        report.warnings.append(
            "gateways.services.charge_records is not available: "
            "gateway records not compared"
        )
    return report


def open_review_items(report: ReconcileReport) -> int:
    """Open (or bump) a dead letter per break, for a human to review."""
    for b in report.breaks:
        dead_letter_record(
            stage=DEAD_LETTER_STAGE,
            error_class=b.kind,
            message=b.message,
            payment_id=b.payment_id,
        )
    return len(report.breaks)
