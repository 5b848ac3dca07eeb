"""Reads of the gateways' own records for people (the admin), by payment."""

from dataclasses import dataclass
from datetime import datetime

from gateways.models import SandboxCharge, SandboxRefund
from gateways.services import idempotency_key_for


@dataclass(frozen=True, slots=True)
class GatewayAttempt:
    """A charge or refund as the gateway recorded it (no card data)."""

    gateway: str
    kind: str  # "charge" or "refund"
    idempotency_key: str
    reference: str
    status: str
    decline_code: str
    amount: int
    currency: str
    created_at: datetime


# Why a charge goes where it goes (``Route.reason``), and what that means.
MERCHANT_PRIMARY = "merchant_primary"
ROUTE_REASONS = {
    MERCHANT_PRIMARY: (
        "the merchant's primary gateway; its failover (if any) only for a "
        "charge the primary provably did not make"
    ),
}


@dataclass(frozen=True, slots=True)
class Route:
    """Where a merchant's charge goes, and why (the enrich stage records it)."""

    gateway: str
    failover: str  # "" when there is none
    reason: str

    @property
    def gateways(self) -> list[str]:
        return [g for g in (self.gateway, self.failover) if g]

    def as_dict(self) -> dict[str, str | None]:
        return {
            "gateway": self.gateway,
            "failover": self.failover or None,
            "reason": self.reason,
        }


def route_for(*, primary: str, secondary: str = "") -> Route:
    """A merchant's route: its primary gateway first; its secondary only for a
    charge the primary provably did not make (``charge_many``)."""
    failover = secondary if secondary and secondary != primary else ""
    return Route(gateway=primary, failover=failover, reason=MERCHANT_PRIMARY)


def route_keys(*, payment_id: str, primary: str, secondary: str = "") -> list[str]:
    """The idempotency key a payment's charge carries on each gateway of its
    route, in order: what to look for in a processor's own dashboard."""
    route = route_for(primary=primary, secondary=secondary)
    return [
        f"{name}: {idempotency_key_for(payment_id, name)}" for name in route.gateways
    ]


def attempts_for_payment(*, payment_id: str) -> list[GatewayAttempt]:
    """The sandbox gateway's log for one payment: its charges, then refunds.
    Other gateways keep their records at the processor (``reconcile`` reads
    them in bulk); a page view never calls out to one."""
    charges = list(
        SandboxCharge.objects.filter(payment_id=payment_id).order_by("created_at")
    )
    refunds = SandboxRefund.objects.filter(charge__in=charges).order_by("created_at")
    return [
        GatewayAttempt(
            gateway="sandbox",
            kind="charge",
            idempotency_key=c.idempotency_key,
            reference=c.reference,
            status=c.status,
            decline_code=c.decline_code,
            amount=c.amount,
            currency=c.currency,
            created_at=c.created_at,
        )
        for c in charges
    ] + [
        GatewayAttempt(
            gateway="sandbox",
            kind="refund",
            idempotency_key=r.idempotency_key,
            reference=r.reference,
            status=r.status,
            decline_code="",
            amount=r.amount,
            currency=r.currency,
            created_at=r.created_at,
        )
        for r in refunds
    ]
