"""Ledger refusals. Each maps to the API error object via core.api."""

from core.errors import SurgeError


class LedgerError(SurgeError):
    """Base of every ledger refusal."""

    code = "ledger_error"


class InsufficientFunds(LedgerError):
    """The merchant's available balance does not cover a debit (e.g. a refund)."""

    status = 409
    code = "insufficient_funds"
