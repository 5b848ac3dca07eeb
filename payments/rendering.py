"""How the API shows a payment and a refund: the one definition of each output.

The API views, intake's stored idempotent response and the webhook payloads
all render through these functions. The DRF serializers in ``payments.api``
describe the same shapes for the OpenAPI schema; a generated test proves each
serializer's output equal to its renderer's.
"""

from datetime import datetime, tzinfo

from django.utils import timezone


def _iso(value: datetime | None, zone: tzinfo) -> str | None:
    """DRF's DateTimeField output: ISO 8601 in ``zone`` (the current time zone),
    UTC as ``Z``."""
    if value is None:
        return None
    text = value.astimezone(zone).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def payment_card(payment) -> dict | None:
    """The card metadata the enrich stage attached (brand, funding, country;
    null where the BIN data does not say), or None before enrich."""
    card = payment.enrichment.get("card")
    if card is None:
        return None
    return {
        "brand": card.get("brand"),
        "funding": card.get("funding"),
        "country": card.get("country"),
    }


def payment_risk(payment) -> dict | None:
    """The risk verdict: ``{outcome, rule}`` (allow / review / block, and the
    rule that caught it), or None before enrich. Never a rule's threshold."""
    verdict = payment.enrichment.get("risk")
    if verdict is None:
        return None
    return {"outcome": verdict.get("outcome"), "rule": verdict.get("rule")}


def payment_render(payment) -> dict:
    """A payment (a model instance or anything with its fields) as the API shows it.

    Plain Python, no serializer instance: intake renders every accepted payment."""
    zone = timezone.get_current_timezone()  # a context-local lookup: once
    return {
        "id": str(payment.id),
        "object": "payment",
        "amount": int(payment.amount),
        "currency": str(payment.currency),
        "status": str(payment.status),
        "source": str(payment.source_id),
        "description": str(payment.description),
        "metadata": {str(k): str(v) for k, v in payment.metadata.items()},
        "customer": str(payment.customer) or None,
        "card": payment_card(payment),
        "risk": payment_risk(payment),
        "amount_refunded": int(payment.amount_refunded),
        "failure_code": payment.failure_code or None,
        "failure_message": payment.failure_message or None,
        "reference": None if payment.reference is None else str(payment.reference),
        "batch": None if payment.batch_id is None else str(payment.batch_id),
        "created_at": _iso(payment.created_at, zone),
        "updated_at": _iso(payment.updated_at, zone),
        "settled_at": _iso(payment.settled_at, zone),
    }


def refund_render(refund) -> dict:
    """A refund as the API shows it."""
    zone = timezone.get_current_timezone()
    return {
        "id": str(refund.id),
        "object": "refund",
        "payment": str(refund.payment_id),
        "amount": int(refund.amount),
        "currency": str(refund.currency),
        "status": str(refund.status),
        "failure_code": str(refund.failure_code),
        "created_at": _iso(refund.created_at, zone),
    }
