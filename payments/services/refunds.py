"""Refunds, asynchronous like payments: reserve now, call the gateway in a task.

``refund_create`` runs in the request's transaction: ``amount_refunded`` grows
by a conditional update (concurrent refunds can never exceed the payment), the
Refund row (pending), its ledger entry (the merchant's no-overdraft account
pays it back) and the ``refund.created`` outbox event. The relay wakes
``refund_execute_batch``, which calls the gateway outside any transaction with
the refund id as idempotency key, so a retry (sweeper) never refunds twice.
A refused refund reverses the reservation and the ledger entry.
"""

import logging
from collections.abc import Sequence

from django.db import transaction
from django.db.models import F

from core.errors import InvalidRequest
from gateways.exceptions import RetryableSafe
from gateways.services import refund as gateway_refund
from ledger.services import post_refund, post_refund_reversal
from payments.error_codes import ErrorCode
from payments.exceptions import PaymentNotFound
from payments.models import Event, Merchant, Payment, Refund
from payments.selectors import payment_get
from payments.services.events import wake_relay
from payments.state import EVENT_FOR_REFUND_STATUS, PaymentStatus, RefundStatus

logger = logging.getLogger(__name__)


def _event(refund: Refund, merchant_id: str) -> None:
    """The refund's event for its current status."""
    Event.objects.create(
        type=EVENT_FOR_REFUND_STATUS[refund.status],
        merchant_id=merchant_id,
        payment_id=refund.payment_id,
        data={"refund": refund.pk, "amount": refund.amount, "status": refund.status},
    )


def refund_create(
    *, merchant: Merchant, payment_id: str, amount: int | None = None
) -> Refund:
    """Reserve a refund of ``amount`` (default: what is left) of a settled payment."""
    payment = payment_get(merchant=merchant, payment_id=payment_id)
    if payment is None:
        raise PaymentNotFound("No such payment.", param="id")
    if payment.status != PaymentStatus.SETTLED:
        raise InvalidRequest(
            f"Only a settled payment can be refunded (this one is {payment.status}).",
            code=ErrorCode.PAYMENT_NOT_REFUNDABLE,
        )
    if amount is None:
        amount = payment.amount - payment.amount_refunded
    if type(amount) is not int or amount <= 0:
        raise InvalidRequest(
            "Nothing left to refund on this payment.", param="amount",
            code=ErrorCode.AMOUNT_TOO_LARGE,
        )  # fmt: skip
    with transaction.atomic(savepoint=False):
        reserved = Payment.objects.filter(
            pk=payment.pk,
            status=PaymentStatus.SETTLED,
            amount_refunded__lte=F("amount") - amount,
        ).update(amount_refunded=F("amount_refunded") + amount)
        if not reserved:
            raise InvalidRequest(
                "Refund exceeds the amount left to refund on this payment.",
                param="amount",
                code=ErrorCode.AMOUNT_TOO_LARGE,
            )
        refund = Refund.objects.create(
            payment=payment, amount=amount, currency=payment.currency
        )
        post_refund(
            refund_id=refund.pk,
            payment_id=payment.pk,
            merchant_id=payment.merchant_id,
            gateway=payment.gateway,
            amount=amount,
            currency=payment.currency,
        )
        _event(refund, payment.merchant_id)
        wake_relay()
    return refund


def refund_execute_batch(refund_ids: Sequence[str]) -> dict[str, int]:
    """Call the gateway for pending refunds and record each outcome."""
    counts = {"succeeded": 0, "failed": 0, "unknown": 0}
    pending = Refund.objects.filter(
        pk__in=refund_ids, status=RefundStatus.PENDING
    ).select_related("payment")
    for refund in pending:
        payment = refund.payment
        try:
            result = gateway_refund(
                gateway=payment.gateway,
                charge_reference=payment.gateway_reference,
                refund_id=refund.pk,
                amount=refund.amount,
                currency=refund.currency,
            )
        except RetryableSafe as exc:
            _refund_failed(refund, type(exc).__name__)
            counts["failed"] += 1
            continue
        except Exception as exc:  # unknown outcome: the sweeper retries, same key
            logger.warning(
                "refund %s outcome unknown: %s", refund.pk, type(exc).__name__
            )
            counts["unknown"] += 1
            continue
        if result.status != "succeeded":
            _refund_failed(refund, "refund_declined")
            counts["failed"] += 1
            continue
        with transaction.atomic():
            if Refund.objects.filter(pk=refund.pk, status=RefundStatus.PENDING).update(
                status=RefundStatus.SUCCEEDED, gateway_reference=result.reference
            ):
                refund.status = RefundStatus.SUCCEEDED
                _event(refund, payment.merchant_id)
        counts["succeeded"] += 1
    return counts


def _refund_failed(refund: Refund, code: str) -> None:
    payment = refund.payment
    with transaction.atomic():
        moved = Refund.objects.filter(pk=refund.pk, status=RefundStatus.PENDING).update(
            status=RefundStatus.FAILED, failure_code=code
        )
        if not moved:
            return
        Payment.objects.filter(pk=payment.pk).update(
            amount_refunded=F("amount_refunded") - refund.amount
        )
        post_refund_reversal(
            refund_id=refund.pk,
            payment_id=payment.pk,
            merchant_id=payment.merchant_id,
            gateway=payment.gateway,
            amount=refund.amount,
            currency=refund.currency,
        )
        refund.status = RefundStatus.FAILED
        _event(refund, payment.merchant_id)
