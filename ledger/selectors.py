"""Reads of the ledger that are more than a .get()."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ledger.models import Account, JournalEntry, Posting
from ledger.services import merchant_available, merchant_pending


def merchant_balance(merchant_id: str) -> dict[str, dict[str, int]]:
    """{currency: {"available": int, "pending": int}} from the account rows
    (each kept equal to the sum of its postings)."""
    kinds = {
        merchant_available(merchant_id): "available",
        merchant_pending(merchant_id): "pending",
    }
    out: dict[str, dict[str, int]] = {}
    rows = Account.objects.filter(code__in=kinds).values_list(
        "code", "currency", "balance"
    )
    for code, currency, balance in rows:
        out.setdefault(currency, {"available": 0, "pending": 0})[kinds[code]] = balance
    return dict(sorted(out.items()))


@dataclass(frozen=True, slots=True)
class PostingLine:
    """One leg of a journal entry, for people to read (the admin)."""

    entry_id: int
    kind: str
    reference: str
    created_at: datetime
    account: str
    direction: str
    amount: int
    currency: str


def postings_for_references(references: Sequence[str]) -> list[PostingLine]:
    """Every leg of the entries posted under ``references`` (a payment id for
    its settlement, a refund id for a refund and its reversal), oldest first.
    Reads through the unique (kind, reference) index."""
    if not references:
        return []
    rows = (
        Posting.objects.filter(
            entry__kind__in=JournalEntry.Kind.values,
            entry__reference__in=list(references),
        )
        .order_by("entry_id", "id")
        .values_list(
            "entry_id",
            "entry__kind",
            "entry__reference",
            "entry__created_at",
            "account__code",
            "direction",
            "amount",
            "currency",
        )
    )
    return [PostingLine(*row) for row in rows]
