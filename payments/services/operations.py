"""Operator actions (admin, commands). Each one leaves an audit record."""

from django.db import transaction

from payments.models import AuditLog, DeadLetter, WebhookDelivery, WebhookEndpoint
from payments.services.deadletters import dead_letter_resolve
from payments.services.handoff import send
from payments.services.refunds import refund_create
from payments.services.webhooks import webhook_delivery_retry
from payments.services.webhooks import webhook_endpoint_disable as endpoint_disable
from payments.workflow import PAYMENT_STEPS


def audit(*, actor: str, action: str, obj, detail: str = "") -> AuditLog:
    return AuditLog.objects.create(
        actor=actor,
        action=action,
        object_type=type(obj).__name__,
        object_id=str(obj.pk),
        detail=detail[:2000],
    )


def dead_letter_retry(*, dead_letter: DeadLetter, actor: str) -> str:
    """Re-drive the dead letter's payment if it is not final; say what happened."""
    payment = dead_letter.payment
    if payment is None:
        outcome = "nothing to retry: no payment attached"
    elif payment.status in PAYMENT_STEPS:
        send(PAYMENT_STEPS[payment.status], [payment.pk])
        outcome = f"re-driven from {payment.status}"
    else:
        outcome = f"payment is final ({payment.status}); not retried"
    audit(actor=actor, action="dead_letter.retry", obj=dead_letter, detail=outcome)
    return outcome


def dead_letter_refund(*, dead_letter: DeadLetter, actor: str) -> str:
    payment = dead_letter.payment
    if payment is None or payment.status != "settled":
        outcome = "only a settled payment can be refunded"
    else:
        refund = refund_create(merchant=payment.merchant, payment_id=payment.pk)
        outcome = f"refund {refund.pk} {refund.status}"
    audit(actor=actor, action="dead_letter.refund", obj=dead_letter, detail=outcome)
    return outcome


def dead_letter_close(*, dead_letter: DeadLetter, actor: str, note: str) -> bool:
    with transaction.atomic():
        done = dead_letter_resolve(dead_letter=dead_letter, resolution=note)
        audit(actor=actor, action="dead_letter.resolve", obj=dead_letter, detail=note)
    return done


def webhook_delivery_retry_now(*, delivery: WebhookDelivery, actor: str) -> str:
    """Give a failed webhook delivery one more attempt now; say what happened."""
    with transaction.atomic():
        if webhook_delivery_retry(delivery_ids=[delivery.pk]):
            outcome = "due now for one more attempt"
        else:
            outcome = f"not retried: delivery is {delivery.status}, not failed"
        audit(
            actor=actor, action="webhook_delivery.retry", obj=delivery, detail=outcome
        )
    return outcome


def webhook_endpoint_disable(*, endpoint: WebhookEndpoint, actor: str) -> str:
    with transaction.atomic():
        endpoint_disable(endpoint=endpoint)
        audit(actor=actor, action="webhook_endpoint.disable", obj=endpoint)
    return "disabled"
