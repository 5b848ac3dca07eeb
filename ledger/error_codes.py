"""Every code the ledger puts in an API error."""

from enum import StrEnum


class ErrorCode(StrEnum):
    LEDGER_ERROR = "ledger_error"  # a posting the ledger refused
    INSUFFICIENT_FUNDS = "insufficient_funds"  # a no-overdraft account would go below 0
