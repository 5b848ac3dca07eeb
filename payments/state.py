"""Payment states and the legal transitions between them. No ORM code here."""

from django.db import models

from payments.error_codes import FailureCode


class PaymentStatus(models.TextChoices):
    PENDING = "pending"
    VALIDATED = "validated"
    ENRICHED = "enriched"
    REVIEW = "review"
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
    # Enrich: card data, route, fee quote and the risk assessment. A risk
    # ``block`` declines the payment; a ``review`` holds it for an operator.
    S.VALIDATED: frozenset({S.ENRICHED, S.REVIEW, S.DECLINED, S.FAILED}),
    S.ENRICHED: frozenset({S.PROCESSING, S.FAILED}),
    # Held for risk review: only an operator moves it (OPERATOR_TRANSITIONS).
    S.REVIEW: frozenset(),
    S.PROCESSING: frozenset({S.SUCCEEDED, S.DECLINED, S.FAILED}),
    S.SUCCEEDED: frozenset({S.SETTLED}),
    S.SETTLED: frozenset(),
    S.DECLINED: frozenset(),
    S.FAILED: frozenset(),
}

# Statuses that wait for a person: no stage or sweeper moves them, yet they are
# not final (the payment is still open).
AWAITING_OPERATOR: frozenset[str] = frozenset({S.REVIEW})

TERMINAL: frozenset[str] = (
    frozenset(s for s, nxt in TRANSITIONS.items() if not nxt) - AWAITING_OPERATOR
)
NON_TERMINAL: frozenset[str] = frozenset(TRANSITIONS) - TERMINAL

# Moves only an operator may make (``operator=True`` in the transition service),
# never a stage, the sweeper or the API; they do not make a final status
# non-final for the pipeline. ``failed -> validated`` re-drives a payment that
# failed *provably uncharged* (see OPERATOR_RETRYABLE_FAILURES): it is charged
# again under the same per-gateway idempotency keys, so still at most once.
# ``review -> enriched`` (approve: on to execute) and ``review -> declined``
# (decline, ``risk_declined``) are an operator's verdict on a risk review.
OPERATOR_TRANSITIONS: dict[str, frozenset[str]] = {
    S.FAILED: frozenset({S.VALIDATED}),
    S.REVIEW: frozenset({S.ENRICHED, S.DECLINED}),
}

# The failure codes that prove no
# gateway charged the payment: every gateway on its route refused it before
# processing (gateway_unavailable), or nothing was sent (card_unavailable).
# A decline is a business outcome and is never retried; an unknown outcome
# stays ``processing`` (never ``failed``) until an inquiry settles it.
OPERATOR_RETRYABLE_FAILURES: frozenset[str] = frozenset(
    {FailureCode.GATEWAY_UNAVAILABLE, FailureCode.CARD_UNAVAILABLE}
)

# The event type written with each transition (the outbox row).
EVENT_FOR_STATUS: dict[str, str] = {
    S.PENDING: "payment.created",
    S.VALIDATED: "payment.validated",
    S.ENRICHED: "payment.enriched",
    S.REVIEW: "payment.review",
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


# A refund is reserved pending, then the gateway's answer makes it final; a
# failed refund gives its reservation back (``amount_refunded`` shrinks).
REFUND_TRANSITIONS: dict[str, frozenset[str]] = {
    RefundStatus.PENDING: frozenset({RefundStatus.SUCCEEDED, RefundStatus.FAILED}),
    RefundStatus.SUCCEEDED: frozenset(),
    RefundStatus.FAILED: frozenset(),
}


def can_transition(current: str, new: str, *, operator: bool = False) -> bool:
    if new in TRANSITIONS.get(current, frozenset()):
        return True
    return operator and new in OPERATOR_TRANSITIONS.get(current, frozenset())
