"""Gateway errors, classified by what they prove about the money.

Declines are results, not errors. No message here ever contains card data.
"""

from core.errors import SurgeError


class GatewayError(SurgeError):
    status = 502
    type = "api_error"
    code = "gateway_error"


class RetryableSafe(GatewayError):
    """Provably not charged (refused connection, open circuit, 5xx saying not
    processed, processing_error): retry, or fail over to another gateway."""

    code = "gateway_unavailable"


class CircuitOpen(RetryableSafe):
    """The breaker refused the call without sending it."""

    code = "circuit_open"


class BulkheadFull(RetryableSafe):
    """No free slot for this gateway in this process within the wait bound."""

    code = "bulkhead_full"


class RequestRejected(RetryableSafe):
    """The gateway refused the request itself (4xx, not a decline): not charged,
    but repeating it on the same gateway is pointless."""

    code = "gateway_rejected"


class UnknownOutcome(GatewayError):
    """The request may have been processed (timeout after send, ambiguous 5xx).

    Resolve by status inquiry on the same gateway; never charge elsewhere.
    """

    code = "gateway_outcome_unknown"


class UnknownGateway(RetryableSafe):
    """No gateway is configured under this name: nothing was sent, so nothing
    was charged there (the payment fails with a dead letter, not limbo)."""

    code = "unknown_gateway"
