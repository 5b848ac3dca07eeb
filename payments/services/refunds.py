"""Refunds, asynchronous like payments: reserve now, call the gateway in a task.

``refund_create`` runs in the request's transaction: ``amount_refunded`` grows
by a conditional update (concurrent refunds can never exceed the payment), the
Refund row (pending), its ledger entry (the merchant's no-overdraft account
pays it back) and the ``refund.created`` outbox event. The relay wakes
``refund_execute_batch``, which calls the gateway outside any transaction with
the refund id as idempotency key, so a retry (sweeper) never refunds twice.
A call without an answer is retried later with backoff (the refund stays
pending with a next attempt time the sweeper honours). A refused refund, or one
out of retries that provably did not happen, reverses the reservation and the
ledger entry and opens a dead letter.
"""

import logging
from collections.abc import Sequence
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from core.errors import InvalidRequest
from gateways.exceptions import RequestRejected, RetryableSafe
from gateways.policy import backoff_seconds
from gateways.services import refund as gateway_refund
from ledger.services import post_refund, post_refund_reversal
from payments.error_codes import ErrorCode, RefundFailureCode
from payments.exceptions import PaymentNotFound
from payments.models import Event, Merchant, Payment, Refund
from payments.selectors import payment_get
from payments.services.deadletters import dead_letter_record
from payments.services.events import wake_relay
from payments.state import EVENT_FOR_REFUND_STATUS, PaymentStatus, RefundStatus
from payments.workflow import REFUND_STEPS

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
    """Call the gateway for pending refunds and record each outcome.

    No answer (the gateway unavailable, its breaker open, or an unknown
    outcome) leaves the refund pending with a next attempt time that the
    sweeper honours: exponential backoff with full jitter, under the same
    idempotency key (the refund id), so nothing holds a worker while it waits
    and a worker killed mid-call loses nothing. After REFUND_MAX_ATTEMPTS a
    refund the gateway provably did not make fails (the reservation is
    reversed) and opens a dead letter; one whose outcome is still unknown opens
    the dead letter but stays pending: it may have been made.
    """
    counts = {"succeeded": 0, "failed": 0, "retrying": 0, "unknown": 0}
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
        except RequestRejected as exc:  # refused as asked: repeating is pointless
            if refund.outcome_unknown:  # ...unless an earlier try may have landed
                _retry_later(refund, exc, may_have_happened=True)
                counts["unknown"] += 1
            else:
                _refund_failed(refund, exc.code, str(exc))
                counts["failed"] += 1
            continue
        except RetryableSafe as exc:  # provably not refunded: try again later
            if _retry_later(refund, exc, may_have_happened=False):
                counts["retrying"] += 1
            else:
                _refund_failed(refund, exc.code, str(exc))
                counts["failed"] += 1
            continue
        except Exception as exc:  # unknown outcome: ask again later, same key
            logger.warning(
                "refund %s outcome unknown: %s", refund.pk, type(exc).__name__
            )
            _retry_later(refund, exc, may_have_happened=True)
            counts["unknown"] += 1
            continue
        if result.status != "succeeded":
            _refund_failed(
                refund,
                RefundFailureCode.REFUND_DECLINED,
                "The gateway declined the refund.",
            )
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


# Attempts a refund gets before it fails (or, if its outcome is unknown, is
# shown to a person), and the backoff between them: full jitter under an
# exponential ceiling, base * 2**n up to cap. The sweeper, every
# SURGE_SWEEP_EVERY_SECONDS, picks up what is due.
REFUND_MAX_ATTEMPTS = 6
REFUND_RETRY_BASE_MS = 5_000
REFUND_RETRY_CAP_MS = 300_000

_REFUND_STAGE = REFUND_STEPS[RefundStatus.PENDING].stage


def refund_retry_delay(attempt: int) -> timedelta:
    """Wait before retry ``attempt`` (0-based) of a refund."""
    return timedelta(
        seconds=backoff_seconds(
            attempt, base_ms=REFUND_RETRY_BASE_MS, cap_ms=REFUND_RETRY_CAP_MS
        )
    )


def _retry_later(refund: Refund, exc: Exception, *, may_have_happened: bool) -> bool:
    """Count a gateway call without an answer and schedule the next one.

    Returns False when a refund that provably did not happen is out of
    attempts (the caller fails it). One whose outcome is unknown is never
    failed: past the limit it opens a dead letter and keeps being asked.
    """
    attempts = refund.attempts + 1
    may_have_happened = may_have_happened or refund.outcome_unknown
    if attempts >= REFUND_MAX_ATTEMPTS and not may_have_happened:
        return False
    due = timezone.now() + refund_retry_delay(min(attempts, REFUND_MAX_ATTEMPTS) - 1)
    with transaction.atomic():
        moved = Refund.objects.filter(pk=refund.pk, status=RefundStatus.PENDING).update(
            attempts=F("attempts") + 1,
            next_attempt_at=due,
            outcome_unknown=may_have_happened,
        )
        if moved and attempts >= REFUND_MAX_ATTEMPTS:
            dead_letter_record(
                stage=_REFUND_STAGE,
                error_class=type(exc).__name__,
                message=f"Refund {refund.pk}: outcome unknown after {attempts} "
                "attempts; still pending and asked again under the same key.",
                payment_id=refund.payment_id,
            )
    logger.info(
        "refund %s: no answer (%s), attempt %d; next at %s",
        refund.pk, type(exc).__name__, attempts, due.isoformat(),
    )  # fmt: skip
    return True


def _refund_failed(refund: Refund, code: str, message: str) -> None:
    """Fail a pending refund: reverse its reservation and ledger entry, and
    open a dead letter (a refund the merchant asked for did not happen)."""
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
        dead_letter_record(
            stage=_REFUND_STAGE,
            error_class=code,
            message=f"Refund {refund.pk} of {refund.amount} {refund.currency} "
            f"failed ({code}): {message}",
            payment_id=payment.pk,
        )


def refunds_lease_due(
    *, stale_after: timedelta | None = None, limit: int = 10_000
) -> list[str]:
    """Pending refunds due for an attempt, leased (their next attempt moved a
    sweep period on, so that the next sweeps do not send them again while
    they are queued or running); oldest first.

    Due: the next attempt time has come, or, for one never tried again since
    it was created, it has been pending ``stale_after`` (default
    SURGE_SWEEP_AFTER_SECONDS: its task was lost, or its worker died).
    """
    now = timezone.now()
    lease = stale_after or timedelta(seconds=settings.SURGE_SWEEP_AFTER_SECONDS)
    with transaction.atomic():
        ids = list(
            Refund.objects.select_for_update(skip_locked=True)
            .filter(status=RefundStatus.PENDING)
            .filter(
                Q(next_attempt_at__lte=now)
                | Q(next_attempt_at__isnull=True, created_at__lt=now - lease)
            )
            .order_by("created_at")
            .values_list("pk", flat=True)[:limit]
        )
        if ids:
            Refund.objects.filter(pk__in=ids).update(next_attempt_at=now + lease)
    return ids
