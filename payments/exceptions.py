"""Payment-domain errors. Each maps to the API error object via core.api."""

from core.errors import Conflict, InvalidRequest, NotFound, SurgeError
from payments.error_codes import ErrorCode


class PaymentError(SurgeError):
    """Base of every payments error."""


class IdempotencyKeyMissing(PaymentError, InvalidRequest):
    code = ErrorCode.IDEMPOTENCY_KEY_MISSING


class IdempotencyKeyReused(PaymentError):
    """Same key, different body or path (422)."""

    status = 422
    type = "idempotency_error"
    code = ErrorCode.IDEMPOTENCY_KEY_REUSED


class PaymentNotFound(PaymentError, NotFound):
    pass


class IllegalTransition(PaymentError, Conflict):
    """A state change that the transition map forbids."""

    code = ErrorCode.ILLEGAL_TRANSITION


class MerchantInactive(PaymentError):
    status = 403
    type = "invalid_request_error"
    code = ErrorCode.MERCHANT_INACTIVE


class WebhookEndpointNotFound(PaymentError, NotFound):
    pass


class EventNotFound(PaymentError, NotFound):
    pass
