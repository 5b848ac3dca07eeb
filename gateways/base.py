"""The one interface every processor adapter implements."""

from dataclasses import dataclass
from typing import Any, Literal, Protocol

ChargeStatus = Literal["succeeded", "declined"]
RefundStatus = Literal["succeeded", "failed"]


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    """``card`` is the vault's Card (``pan``, ``exp_month``, ``exp_year``); its repr
    masks the PAN. Never log it or put ``card.pan`` in a message."""

    idempotency_key: str
    payment_id: str
    merchant_id: str
    amount: int
    currency: str
    card: Any


@dataclass(frozen=True, slots=True)
class ChargeResult:
    status: ChargeStatus
    reference: str
    decline_code: str = ""
    amount: int = 0
    currency: str = ""


@dataclass(frozen=True, slots=True)
class RefundRequest:
    idempotency_key: str
    charge_reference: str
    amount: int
    currency: str


@dataclass(frozen=True, slots=True)
class RefundResult:
    status: RefundStatus
    reference: str


class Gateway(Protocol):
    name: str

    def charge(self, req: ChargeRequest) -> ChargeResult:
        """Charge once per ``req.idempotency_key``; a repeat returns the first result.

        Raises RetryableSafe (not charged) or UnknownOutcome (maybe charged).
        """
        ...

    def refund(self, req: RefundRequest) -> RefundResult: ...

    def inquire(self, idempotency_key: str) -> ChargeResult | None:
        """The charge made under this key; None means provably no such charge."""
        ...
