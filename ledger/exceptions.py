"""Ledger refusals. Each maps to the API error object via core.api."""

from core.errors import SurgeError
from ledger.error_codes import ErrorCode


class LedgerError(SurgeError):
    """Base of every ledger refusal."""

    code = ErrorCode.LEDGER_ERROR


class InsufficientFunds(LedgerError):
    """The merchant's available balance does not cover a debit (e.g. a refund)."""

    status = 409
    code = ErrorCode.INSUFFICIENT_FUNDS
