"""Reconciliation, the ledger's side: prove the ledger agrees with itself and
with the records a caller hands in.

(a) the ledger with itself: every entry has postings and balances per
    currency; every posting is in its account's currency; every account's
    balance equals the sum of its postings (normal-balance sign);
(b) the ledger with the settled payments the caller passes in (plain rows):
    each has one settlement entry of its amount, currency, fee, merchant and
    gateway; no settlement entry exists for a payment not among them;
(c) the ledger with each gateway's own records, read through a callable the
    caller passes in (``check_gateway_records``).

The ledger imports no other app: where the settled payments and the gateway
records come from is decided above it (``payments.services.reconciliation``).
Reads run in one REPEATABLE READ transaction, so a settle batch committing
mid-run cannot show up as a false break.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from itertools import islice

from django.db import connection, transaction
from tqdm import tqdm

from core.ids import id_timestamp_ms
from ledger.models import DEBIT_NORMAL, Account, JournalEntry, Posting
from ledger.services import FEES, REFUND, SETTLEMENT

logger = logging.getLogger(__name__)

CHUNK = 5000
# (gateway, reference, kind, amount, currency); reference is the payment id
# for charges and the refund id for refunds; kind is "charge" or "refund".
GatewayRecord = tuple[str, str, str, int, str]
RecordSource = Callable[[str, dt.datetime | None], Iterable]


@dataclass(frozen=True, slots=True)
class Break:
    """One disagreement. ``payment_id`` is set only for a payment known to exist."""

    kind: str
    message: str
    reference: str | None = None
    payment_id: str | None = None


@dataclass
class ReconcileReport:
    breaks: list[Break] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.breaks

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "warnings": self.warnings,
            "breaks": [asdict(b) for b in self.breaks],
        }


def _chunks(rows: Iterable, size: int) -> Iterator[list]:
    it = iter(rows)
    while chunk := list(islice(it, size)):
        yield chunk


def _bar(progress: bool, **kwargs) -> tqdm:
    return tqdm(disable=not progress, leave=False, **kwargs)


# --- (a) the ledger with itself ----------------------------------------------

_SIGNED = "CASE p.direction WHEN 'debit' THEN p.amount ELSE -p.amount END"


def check_ledger(*, progress: bool = False) -> tuple[list[Break], dict[str, int]]:
    posting, entry, account = (
        Posting._meta.db_table,
        JournalEntry._meta.db_table,
        Account._meta.db_table,
    )
    breaks: list[Break] = []
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT e.id, e.kind, e.reference, p.currency, sum({_SIGNED}) "  # noqa: S608
            f"FROM {posting} p JOIN {entry} e ON e.id = p.entry_id "
            "GROUP BY e.id, e.kind, e.reference, p.currency "
            f"HAVING sum({_SIGNED}) <> 0"
        )
        for pk, kind, ref, currency, net in cursor.fetchall():
            breaks.append(
                Break(
                    "unbalanced_entry",
                    f"entry {pk} ({kind} {ref}) is off by {net} {currency} "
                    "(debits - credits)",
                    reference=ref,
                )
            )
        cursor.execute(
            f"SELECT e.id, e.kind, e.reference FROM {entry} e WHERE NOT EXISTS "  # noqa: S608
            f"(SELECT 1 FROM {posting} p WHERE p.entry_id = e.id)"
        )
        for pk, kind, ref in cursor.fetchall():
            breaks.append(
                Break("empty_entry", f"entry {pk} ({kind} {ref}) has no postings", ref)
            )
        cursor.execute(
            f"SELECT p.id, p.currency, a.code, a.currency FROM {posting} p "  # noqa: S608
            f"JOIN {account} a ON a.id = p.account_id WHERE p.currency <> a.currency"
        )
        for pk, cur, code, account_cur in cursor.fetchall():
            breaks.append(
                Break(
                    "posting_currency_mismatch",
                    f"posting {pk} is in {cur} but account {code} is in {account_cur}",
                )
            )
        cursor.execute(f"SELECT count(*) FROM {entry}")  # noqa: S608
        entries = cursor.fetchone()[0]
        cursor.execute(
            f"SELECT a.id, a.code, a.currency, a.type, a.no_overdraft, a.balance, "  # noqa: S608
            f"COALESCE(s.net, 0) FROM {account} a LEFT JOIN ("
            f"SELECT p.account_id, sum({_SIGNED}) AS net FROM {posting} p "
            "GROUP BY p.account_id) s ON s.account_id = a.id ORDER BY a.id"
        )
        rows = cursor.fetchall()
    for _, code, currency, type_, no_overdraft, balance, net in _bar(
        progress, iterable=rows, desc="accounts", unit="account"
    ):
        expected = int(net) if type_ in DEBIT_NORMAL else -int(net)
        if balance != expected:
            breaks.append(
                Break(
                    "account_balance_mismatch",
                    f"account {code} ({currency}) holds {balance} but its postings "
                    f"sum to {expected}",
                )
            )
        if no_overdraft and balance < 0:
            breaks.append(
                Break("overdraft", f"account {code} ({currency}) is at {balance}")
            )
    return breaks, {"entries": entries, "accounts": len(rows)}


# --- (b) the ledger with the settled payments ----------------------------------


def _on_or_after(reference: str, since: dt.datetime | None) -> bool:
    """Whether an entry belongs to the --since window. A payment's id is minted
    before its ``created_at``, so this never pulls in a payment that a source
    of settled payments filtering on ``created_at >= since`` left out."""
    if since is None:
        return True
    ms = id_timestamp_ms(reference)
    return ms is None or ms >= int(since.timestamp() * 1000)


@dataclass
class _Legs:
    debits: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    credits: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    gateway: str | None = None


def _legs_by_reference(kind: str, references: list[str]) -> dict[str, _Legs]:
    out: dict[str, _Legs] = defaultdict(_Legs)
    rows = Posting.objects.filter(
        entry__kind=kind, entry__reference__in=references
    ).values_list(
        "entry__reference", "direction", "amount", "currency", "account__code"
    )
    for ref, direction, amount, currency, code in rows:
        legs = out[ref]
        side = legs.debits if direction == "debit" else legs.credits
        side[f"{code}|{currency}"] += amount
        if code.startswith("gateway:") and code.endswith(":receivable"):
            legs.gateway = code.split(":")[1]
    return out


def check_settlements(
    settled: Iterable[tuple],
    *,
    since: dt.datetime | None = None,
    progress: bool = False,
    charges: list[GatewayRecord] | None = None,
) -> tuple[list[Break], dict[str, int]]:
    """``settled`` yields (id, merchant_id, amount, currency, fee, gateway,
    gateway_reference) of every settled payment. Appends our side of each
    charge to ``charges`` for the gateway check."""
    breaks: list[Break] = []
    seen: set[str] = set()
    bar = _bar(progress, desc="settled payments", unit="payment")
    for chunk in _chunks(settled, CHUNK):
        legs = _legs_by_reference(SETTLEMENT, [row[0] for row in chunk])
        for pid, merchant_id, amount, currency, fee, gateway, _ in chunk:
            seen.add(pid)
            if charges is not None:
                charges.append((gateway, pid, "charge", amount, currency))
            entry = legs.get(pid)
            if entry is None:
                breaks.append(
                    Break(
                        "missing_settlement",
                        f"settled payment {pid} ({amount} {currency}) has no "
                        "settlement entry",
                        pid,
                        pid,
                    )
                )
                continue
            breaks.extend(
                _settlement_breaks(
                    pid, merchant_id, amount, currency, fee, gateway, entry
                )
            )
        bar.update(len(chunk))
    bar.close()
    refs = JournalEntry.objects.filter(kind=SETTLEMENT).values_list(
        "reference", flat=True
    )
    for ref in _bar(progress, iterable=refs.iterator(CHUNK), desc="settlement entries"):
        if ref not in seen and _on_or_after(ref, since):
            breaks.append(
                Break(
                    "settlement_for_unsettled_payment",
                    f"settlement entry for {ref}, which is not a settled payment",
                    ref,
                )
            )
    return breaks, {"settled_payments": len(seen)}


def _settlement_breaks(pid, merchant_id, amount, currency, fee, gateway, entry):
    receivable = f"gateway:{gateway}:receivable|{currency}"
    available = f"merchant:{merchant_id}:available|{currency}"
    fees = f"{FEES}|{currency}"
    if dict(entry.debits) != {receivable: amount} or sum(entry.credits.values()) != (
        amount
    ):
        got = ", ".join(f"{k}={v}" for k, v in sorted(entry.debits.items()))
        yield Break(
            "settlement_amount_mismatch",
            f"payment {pid} is {amount} {currency} via {gateway}; its settlement "
            f"entry debits {got}",
            pid,
            pid,
        )
        return
    expected = {k: v for k, v in ((available, amount - (fee or 0)), (fees, fee)) if v}
    if fee is not None and dict(entry.credits) != expected:
        got = ", ".join(f"{k}={v}" for k, v in sorted(entry.credits.items()))
        yield Break(
            "settlement_split_mismatch",
            f"payment {pid} (fee {fee}) was credited {got}",
            pid,
            pid,
        )


# --- (c) the ledger with the gateways -----------------------------------------


def _record(raw) -> GatewayRecord:
    """Accept a tuple, a mapping or an object with the five fields."""
    names = ("gateway", "reference", "kind", "amount", "currency")
    if isinstance(raw, dict):
        values = [raw[n] for n in names]
    elif isinstance(raw, tuple | list):
        values = list(raw)
    else:
        values = [getattr(raw, n) for n in names]
    gateway, reference, kind, amount, currency = values
    return str(gateway), str(reference), str(kind), int(amount), str(currency).lower()


def check_gateway_records(ours: Iterable, theirs: Iterable) -> list[Break]:
    """Compare our (gateway, reference, kind, amount, currency) records with a
    gateway's: missing on either side, amount or currency mismatch, duplicates.

    Records match on (gateway, reference, kind). Pure: no database access.
    """
    breaks: list[Break] = []

    def index(records: Iterable, side: str) -> dict[tuple, tuple[int, str]]:
        out: dict[tuple, tuple[int, str]] = {}
        for raw in records:
            gateway, ref, kind, amount, currency = _record(raw)
            key = (gateway, ref, kind)
            if key in out:
                breaks.append(
                    Break(
                        f"duplicate_{side}_record",
                        f"{side} records {kind} {ref} at {gateway} more than once",
                        ref,
                    )
                )
                continue
            out[key] = (amount, currency)
        return out

    mine, gateway_side = index(ours, "ledger"), index(theirs, "gateway")
    for key in sorted(mine.keys() | gateway_side.keys()):
        gateway, ref, kind = key
        payment_id = ref if kind == "charge" and key in mine else None
        ours_, theirs_ = mine.get(key), gateway_side.get(key)
        if theirs_ is None:
            breaks.append(
                Break(
                    "missing_at_gateway",
                    f"{gateway} has no {kind} {ref} ({ours_[0]} {ours_[1]})",
                    ref,
                    payment_id,
                )
            )
        elif ours_ is None:
            breaks.append(
                Break(
                    "stray_gateway_record",
                    f"{gateway} reports a {kind} {ref} ({theirs_[0]} {theirs_[1]}) "
                    "that we did not record",
                    ref,
                )
            )
        elif ours_[1] != theirs_[1]:
            breaks.append(
                Break(
                    "gateway_currency_mismatch",
                    f"{kind} {ref}: we have {ours_[1]}, {gateway} has {theirs_[1]}",
                    ref,
                    payment_id,
                )
            )
        elif ours_[0] != theirs_[0]:
            breaks.append(
                Break(
                    "gateway_amount_mismatch",
                    f"{kind} {ref}: we have {ours_[0]} {ours_[1]}, {gateway} has "
                    f"{theirs_[0]} {theirs_[1]}",
                    ref,
                    payment_id,
                )
            )
    return breaks


def ledger_refunds(since: dt.datetime | None = None) -> list[GatewayRecord]:
    """Our side of each refund, read from refund entries (the receivable leg)."""
    rows = Posting.objects.filter(
        entry__kind=REFUND, direction="credit", account__code__startswith="gateway:"
    ).values_list(
        "entry__reference", "entry__payment_id", "account__code", "amount", "currency"
    )
    reversed_ = set(
        JournalEntry.objects.filter(kind=JournalEntry.Kind.REFUND_REVERSAL).values_list(
            "reference", flat=True
        )
    )
    return [
        (code.split(":")[1], ref, "refund", amount, currency)
        for ref, pid, code, amount, currency in rows
        if ref not in reversed_ and _on_or_after(pid or ref, since)
    ]


def check_gateways(
    charges: list[GatewayRecord],
    source: RecordSource,
    *,
    since: dt.datetime | None = None,
    gateways: Iterable[str] = (),
) -> tuple[list[Break], list[str], dict[str, int]]:
    refunds = ledger_refunds(since)
    names = sorted({r[0] for r in charges} | {r[0] for r in refunds} | set(gateways))
    theirs: list[GatewayRecord] = []
    for name in names:
        theirs.extend(_record(r) for r in source(name, since))
    warnings: list[str] = []
    ours = list(charges)
    if any(r[2] == "refund" for r in theirs):
        ours.extend(refunds)
    elif refunds:
        warnings.append("gateway records carry no refunds: refunds not compared")
    return (
        check_gateway_records(ours, theirs),
        warnings,
        {"gateway_records": len(theirs)},
    )


# --- entry point --------------------------------------------------------------


def reconcile(
    *,
    settled: Callable[..., Iterable[tuple]],
    record_source: RecordSource | None = None,
    since: dt.datetime | None = None,
    progress: bool = False,
) -> ReconcileReport:
    """Run (a), (b) and, given a ``record_source``, (c); read-only.

    ``settled(since=...)`` yields the settled payments' rows (see
    ``check_settlements``); it runs inside the same snapshot as the ledger reads.
    """
    report = ReconcileReport()
    with _snapshot():
        breaks, counts = check_ledger(progress=progress)
        report.breaks += breaks
        report.checked.update(counts)
        charges: list[GatewayRecord] = []
        breaks, counts = check_settlements(
            settled(since=since), since=since, progress=progress, charges=charges
        )
        report.breaks += breaks
        report.checked.update(counts)
        if record_source:
            breaks, warnings, counts = check_gateways(
                charges, record_source, since=since
            )
            report.breaks += breaks
            report.warnings += warnings
            report.checked.update(counts)
    return report


@contextlib.contextmanager
def _snapshot():
    """One consistent read snapshot for the whole run."""
    if connection.in_atomic_block:
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        yield
