"""Payroll batch intake: up to 1,000 payments in one request, all or nothing.

Every item is validated (its shape by the API's payment rules, then the
merchant's rules, token ownership, reference unused) before anything is
written; then the batch, its payments and their events go in with bulk
inserts in one transaction.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Sum
from django.utils import timezone

from core.errors import Conflict, InvalidRequest
from core.tracing import current_traceparent
from payments import metrics, sql
from payments.error_codes import ErrorCode
from payments.models import Merchant, Payment, PaymentBatch
from payments.services.events import events_insert, wake_relay
from payments.services.intake import check_amount_and_currency
from payments.state import EVENT_FOR_STATUS, PaymentStatus
from vault.models import Token

MAX_BATCH = 1000


class BatchInvalid(InvalidRequest):
    code = ErrorCode.BATCH_INVALID

    def __init__(self, errors: list[dict]):
        first = errors[0]
        super().__init__(
            f"{len(errors)} invalid item(s); nothing was written. "
            f"First: item {first['index']}: {first['message']}",
            param=f"payments[{first['index']}][{first['param']}]",
        )
        self.extra = {"errors": errors}


@dataclass(frozen=True, slots=True)
class BatchItem:
    amount: int
    currency: str
    source: str
    reference: str
    description: str = ""
    metadata: dict | None = None
    customer: str = ""


def _item_error(index: int, param: str, message: str) -> dict:
    return {"index": index, "param": param, "message": message}


def validate_items(
    *, merchant: Merchant, items: Sequence[tuple[int, BatchItem]]
) -> tuple[list[tuple[int, BatchItem]], list[dict]]:
    """The merchant's rules for well-formed items (the API's serializers check
    their shape): split them into (index, valid item) and per-item errors,
    with two queries whatever the count."""
    tokens = sql.merchant_has(
        Token, "id", merchant.id, {item.source for _, item in items}
    )
    used = sql.merchant_has(
        Payment, "reference", merchant.id, {item.reference for _, item in items}
    )
    seen: set[str] = set()
    valid: list[tuple[int, BatchItem]] = []
    errors: list[dict] = []
    for index, item in items:
        problems = []
        try:
            check_amount_and_currency(
                merchant=merchant, amount=item.amount, currency=item.currency
            )
        except InvalidRequest as exc:
            problems.append(_item_error(index, exc.param or "", exc.message))
        if item.source not in tokens:
            problems.append(_item_error(index, "source", "No such token."))
        if item.reference in used:
            problems.append(_item_error(index, "reference", "Reference already used."))
        elif item.reference in seen:
            problems.append(
                _item_error(index, "reference", "Reference repeated within the batch.")
            )
        seen.add(item.reference)
        if problems:
            errors.extend(problems)
        else:
            valid.append((index, item))
    return valid, errors


def payment_batch_create(
    *, merchant: Merchant, items: Sequence[BatchItem]
) -> tuple[PaymentBatch, list[Payment]]:
    """Write a batch of already-validated items: three bulk inserts, one transaction."""
    payments = [
        Payment(
            merchant=merchant,
            amount=item.amount,
            currency=item.currency,
            source_id=item.source,
            reference=item.reference,
            description=item.description,
            metadata=item.metadata or {},
            customer=item.customer,
        )
        for item in items
    ]
    created_type = EVENT_FOR_STATUS[PaymentStatus.PENDING]
    now = timezone.now()
    try:
        with transaction.atomic(savepoint=False):
            batch = PaymentBatch.objects.create(
                merchant=merchant,
                count=len(payments),
                total_amount=sum(p.amount for p in payments),
            )
            for payment in payments:
                payment.batch = batch
            sql.payments_insert(
                payments, merchant_id=merchant.id, batch_id=batch.pk, now=now
            )
            for payment in payments:  # as bulk_create leaves them: saved
                payment.created_at = payment.updated_at = now
                payment._state.adding = False
                payment._state.db = connection.alias
            traceparent = current_traceparent()
            events_insert(
                created_type,
                [
                    (
                        merchant.id,
                        p.pk,
                        sql.created_event_data(p.amount, p.currency, traceparent),
                    )
                    for p in payments
                ],
            )
            wake_relay()
    except IntegrityError as exc:
        if "payment_reference_per_merchant" in str(exc):
            raise Conflict(
                "A reference in this batch was used by a concurrent request; "
                "retry to see which.",
                param="reference",
                code=ErrorCode.REFERENCE_CONFLICT,
            ) from None
        raise
    metrics.payments_initiated(len(payments), channel="batch")
    return batch, payments


def payment_batch_submit(
    *,
    merchant: Merchant,
    items: Sequence[tuple[int, BatchItem]],
    errors: Sequence[dict] = (),
) -> tuple[PaymentBatch, list[Payment]]:
    """All of a batch or nothing: ``items`` are the well-formed ones (by their
    index in the request), ``errors`` what the API found in the others. Any
    error, of shape or of the merchant's rules, is a 400 listing each one."""
    valid, problems = validate_items(merchant=merchant, items=items)
    errors = [*errors, *problems]
    if errors:
        raise BatchInvalid(errors)
    return payment_batch_create(merchant=merchant, items=[item for _, item in valid])


def payment_batch_summary(*, batch: PaymentBatch) -> dict:
    """Counts and totals per status, so a payroll run can be followed to the end."""
    rows = (
        Payment.objects.filter(batch=batch)
        .values("status")
        .annotate(count=Count("pk"), amount=Sum("amount"))
    )
    by_status = {s: {"count": 0, "amount": 0} for s in PaymentStatus.values}
    for row in rows:
        by_status[row["status"]] = {"count": row["count"], "amount": row["amount"]}
    final = sum(by_status[s]["count"] for s in ("settled", "declined", "failed"))
    return {
        "id": batch.pk,
        "object": "payment_batch",
        "count": batch.count,
        "total_amount": batch.total_amount,
        "created_at": batch.created_at.isoformat(),
        "completed": final == batch.count,
        "by_status": by_status,
    }
