"""Every code a gateway call ends with: classified errors (a dead letter's and a
log line's reason, never shown to a merchant as an API error) and the decline
codes the sandbox and simulator give (a declined payment's ``failure_code``;
real processors add their own, kept as they come)."""

from enum import StrEnum


class ErrorCode(StrEnum):
    """Why a gateway call did not give an answer."""

    GATEWAY_ERROR = "gateway_error"  # base of all below
    GATEWAY_UNAVAILABLE = "gateway_unavailable"  # provably not charged (retry safe)
    CIRCUIT_OPEN = "circuit_open"  # the breaker refused the call
    BULKHEAD_FULL = "bulkhead_full"  # too many calls in flight to that gateway
    GATEWAY_REJECTED = "gateway_rejected"  # refused before processing (4xx)
    NOT_SENT = "not_sent"  # the connection failed before the request went out
    RATE_LIMITED = "rate_limited"  # the processor said slow down
    PROCESSING_ERROR = "processing_error"  # 5xx that says not processed
    IDEMPOTENCY_ERROR = "idempotency_error"  # same key, different request
    NO_CHARGE = "no_charge"  # a refund for a charge the gateway does not know
    PROCESSOR_REJECTED = "stripe_rejected"  # Stripe refused it without a code
    GATEWAY_OUTCOME_UNKNOWN = "gateway_outcome_unknown"  # timeout after sending
    UNKNOWN_GATEWAY = "unknown_gateway"  # no adapter of that name configured


class DeclineCode(StrEnum):
    """Why a card was refused (a business outcome, never a breaker failure)."""

    CARD_DECLINED = "card_declined"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    INCORRECT_NUMBER = "incorrect_number"
    EXPIRED_CARD = "expired_card"
