"""Every code the payments app puts in an API error or on a failed payment.

``ErrorCode`` values appear as ``error.code`` in a refused request;
``FailureCode`` values as a payment's ``failure_code`` once it has failed or
been declined. The README and the OpenAPI schema list both from here.
"""

from enum import StrEnum


class ErrorCode(StrEnum):
    """``error.code`` of a request the payments API refused."""

    IDEMPOTENCY_KEY_MISSING = "idempotency_key_missing"
    IDEMPOTENCY_KEY_INVALID = "idempotency_key_invalid"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    AMOUNT_TOO_LARGE = "amount_too_large"
    CURRENCY_NOT_SUPPORTED = "currency_not_supported"
    PAYMENT_NOT_REFUNDABLE = "payment_not_refundable"
    BATCH_INVALID = "batch_invalid"
    REFERENCE_CONFLICT = "reference_conflict"
    ILLEGAL_TRANSITION = "illegal_transition"
    MERCHANT_INACTIVE = "merchant_inactive"
    URL_INVALID = "url_invalid"
    EVENT_TYPE_INVALID = "event_type_invalid"
    TOO_MANY_ENDPOINTS = "too_many_endpoints"
    QUOTA_EXCEEDED = "quota_exceeded"  # one request holds more than a whole quota
    URL_ADDRESS_REFUSED = "url_address_refused"
    ENDPOINT_DISABLED = "endpoint_disabled"
    TOO_MANY_EVENTS = "too_many_events"


class FailureCode(StrEnum):
    """A payment's ``failure_code``: why it failed (status ``failed``) or was
    declined (``declined``). A gateway's own decline code is kept as it came
    (``card_declined`` when it gave none); these are the ones Surge sets."""

    MERCHANT_INACTIVE = "merchant_inactive"
    INVALID_SOURCE = "invalid_source"
    EXPIRED_CARD = "expired_card"
    AMOUNT_TOO_LARGE = "amount_too_large"
    CURRENCY_NOT_SUPPORTED = "currency_not_supported"
    CARD_UNAVAILABLE = "card_unavailable"
    GATEWAY_UNAVAILABLE = "gateway_unavailable"
    CARD_DECLINED = "card_declined"
    RISK_BLOCKED = "risk_blocked"  # a merchant's risk rule blocked it (enrich)
    RISK_DECLINED = "risk_declined"  # an operator declined it after risk review


class RefundFailureCode(StrEnum):
    """A refund's ``failure_code`` when the gateway refused it outright; one
    that got no answer through its retries carries the gateway's code for why
    (``circuit_open``, ``gateway_unavailable``, ``gateway_rejected``, ...)."""

    REFUND_DECLINED = "refund_declined"
