"""Reads of the ledger that are more than a .get()."""

from ledger.models import Account
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
