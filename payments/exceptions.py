"""Payment-domain errors. Each maps to the API error object via core.api."""

from core.errors import Conflict, InvalidRequest, NotFound, SurgeError


class PaymentError(SurgeError):
    """Base of every payments error."""


class IdempotencyKeyMissing(PaymentError, InvalidRequest):
    code = "idempotency_key_missing"


class IdempotencyKeyReused(PaymentError):
    """Same key, different body or path (422)."""

    status = 422
    type = "idempotency_error"
    code = "idempotency_key_reused"


class PaymentNotFound(PaymentError, NotFound):
    pass


class IllegalTransition(PaymentError, Conflict):
    """A state change that the transition map forbids."""

    code = "illegal_transition"


class MerchantInactive(PaymentError):
    status = 403
    type = "invalid_request_error"
    code = "merchant_inactive"


class WebhookEndpointNotFound(PaymentError, NotFound):
    pass
