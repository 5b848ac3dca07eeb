"""Gateway errors, classified by what they prove about the money.

Declines are results, not errors. No message here ever contains card data.
"""

from core.errors import SurgeError
from gateways.error_codes import ErrorCode


class GatewayError(SurgeError):
    status = 502
    type = "api_error"
    code = ErrorCode.GATEWAY_ERROR


class RetryableSafe(GatewayError):
    """Provably not charged (refused connection, open circuit, 5xx saying not
    processed, processing_error): retry, or fail over to another gateway."""

    code = ErrorCode.GATEWAY_UNAVAILABLE


class CircuitOpen(RetryableSafe):
    """The breaker refused the call without sending it."""

    code = ErrorCode.CIRCUIT_OPEN


class BulkheadFull(RetryableSafe):
    """No free slot for this gateway in this process within the wait bound."""

    code = ErrorCode.BULKHEAD_FULL


class RequestRejected(RetryableSafe):
    """The gateway refused the request itself (4xx, not a decline): not charged,
    but repeating it on the same gateway is pointless."""

    code = ErrorCode.GATEWAY_REJECTED


class UnknownOutcome(GatewayError):
    """The request may have been processed (timeout after send, ambiguous 5xx).

    Resolve by status inquiry on the same gateway; never charge elsewhere.
    """

    code = ErrorCode.GATEWAY_OUTCOME_UNKNOWN


class UnknownGateway(RetryableSafe):
    """No gateway is configured under this name: nothing was sent, so nothing
    was charged there (the payment fails with a dead letter, not limbo)."""

    code = ErrorCode.UNKNOWN_GATEWAY
