"""Payment states and the legal transitions between them. No ORM code here."""

from django.db import models


class PaymentStatus(models.TextChoices):
    PENDING = "pending"
    VALIDATED = "validated"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    SETTLED = "settled"
    DECLINED = "declined"
    FAILED = "failed"


class RefundStatus(models.TextChoices):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


S = PaymentStatus

TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.VALIDATED, S.FAILED}),
    S.VALIDATED: frozenset({S.PROCESSING, S.FAILED}),
    S.PROCESSING: frozenset({S.SUCCEEDED, S.DECLINED, S.FAILED}),
    S.SUCCEEDED: frozenset({S.SETTLED}),
    S.SETTLED: frozenset(),
    S.DECLINED: frozenset(),
    S.FAILED: frozenset(),
}

TERMINAL: frozenset[str] = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
NON_TERMINAL: frozenset[str] = frozenset(TRANSITIONS) - TERMINAL

# The event type written with each transition (the outbox row).
EVENT_FOR_STATUS: dict[str, str] = {
    S.PENDING: "payment.created",
    S.VALIDATED: "payment.validated",
    S.PROCESSING: "payment.processing",
    S.SUCCEEDED: "payment.succeeded",
    S.SETTLED: "payment.settled",
    S.DECLINED: "payment.declined",
    S.FAILED: "payment.failed",
}

# The event written with each refund status.
EVENT_FOR_REFUND_STATUS: dict[str, str] = {
    RefundStatus.PENDING: "refund.created",
    RefundStatus.SUCCEEDED: "refund.succeeded",
    RefundStatus.FAILED: "refund.failed",
}


def can_transition(current: str, new: str) -> bool:
    return new in TRANSITIONS.get(current, frozenset())
