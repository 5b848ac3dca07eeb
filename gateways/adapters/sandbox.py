"""In-process deterministic gateway backed by its own table (test cards apply)."""

import threading
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from django.db import DatabaseError, connection, transaction

from gateways import testcards
from gateways.base import ChargeRequest, ChargeResult, RefundRequest, RefundResult
from gateways.error_codes import ErrorCode
from gateways.exceptions import RequestRejected, RetryableSafe, UnknownOutcome
from gateways.models import SandboxCharge, SandboxRefund

T = TypeVar("T")


def _result(row: SandboxCharge) -> ChargeResult:
    return ChargeResult(
        status=row.status,
        reference=row.reference,
        decline_code=row.decline_code,
        amount=row.amount,
        currency=row.currency,
    )


def _db(fn: Callable[[], T]) -> T:
    """Run ``fn``; on a pool thread close the connection afterwards so idle
    per-thread connections never pile up (or block dropping a test database)."""
    try:
        return fn()
    except DatabaseError as exc:
        raise UnknownOutcome(f"sandbox database error: {type(exc).__name__}") from exc
    finally:
        if threading.current_thread() is not threading.main_thread():
            connection.close()


class SandboxGateway:
    name = "sandbox"

    def charge(self, req: ChargeRequest) -> ChargeResult:
        return _db(lambda: self._charge(req))

    def _charge(self, req: ChargeRequest) -> ChargeResult:
        row = SandboxCharge.objects.filter(idempotency_key=req.idempotency_key).first()
        if row is None:
            card = req.card
            verdict = testcards.outcome(card.pan, card.exp_month, card.exp_year)
            if verdict == "processing_error":
                raise RetryableSafe(
                    "sandbox: processing_error", code=ErrorCode.PROCESSING_ERROR
                )
            succeeded = verdict == "succeeded"
            # ON CONFLICT DO NOTHING: concurrent identical charges keep one row.
            SandboxCharge.objects.bulk_create(
                [
                    SandboxCharge(
                        idempotency_key=req.idempotency_key,
                        reference=f"ch_sbx_{uuid.uuid4().hex}",
                        payment_id=req.payment_id,
                        merchant_id=req.merchant_id,
                        amount=req.amount,
                        currency=req.currency,
                        status="succeeded" if succeeded else "declined",
                        decline_code="" if succeeded else verdict,
                    )
                ],
                ignore_conflicts=True,
            )
            row = SandboxCharge.objects.get(idempotency_key=req.idempotency_key)
        if (row.amount, row.currency, row.payment_id) != (
            req.amount,
            req.currency,
            req.payment_id,
        ):
            raise RequestRejected(
                "sandbox: idempotency key reused with different parameters",
                code=ErrorCode.IDEMPOTENCY_ERROR,
            )
        return _result(row)

    def inquire(self, idempotency_key: str) -> ChargeResult | None:
        def find() -> ChargeResult | None:
            row = SandboxCharge.objects.filter(idempotency_key=idempotency_key).first()
            return _result(row) if row else None

        return _db(find)

    def refund(self, req: RefundRequest) -> RefundResult:
        return _db(lambda: self._refund(req))

    def _refund(self, req: RefundRequest) -> RefundResult:
        with transaction.atomic():
            done = SandboxRefund.objects.filter(
                idempotency_key=req.idempotency_key
            ).first()
            if done is None:
                charge = (
                    SandboxCharge.objects.select_for_update()
                    .filter(reference=req.charge_reference)
                    .first()
                )
                if charge is None:
                    raise RequestRejected(
                        "sandbox: no such charge", code=ErrorCode.NO_CHARGE
                    )
                refunded = sum(
                    r.amount for r in charge.refunds.filter(status="succeeded")
                )
                ok = (
                    charge.status == "succeeded"
                    and req.currency == charge.currency
                    and refunded + req.amount <= charge.amount
                )
                SandboxRefund.objects.bulk_create(
                    [
                        SandboxRefund(
                            idempotency_key=req.idempotency_key,
                            reference=f"re_sbx_{uuid.uuid4().hex}",
                            charge=charge,
                            amount=req.amount,
                            currency=req.currency,
                            status="succeeded" if ok else "failed",
                        )
                    ],
                    ignore_conflicts=True,
                )
                done = SandboxRefund.objects.get(idempotency_key=req.idempotency_key)
        return RefundResult(status=done.status, reference=done.reference)

    def records(self, since: datetime | None = None) -> list[dict]:
        def load() -> list[dict]:
            charges = SandboxCharge.objects.order_by("created_at", "pk")
            refunds = SandboxRefund.objects.select_related("charge").order_by(
                "created_at", "pk"
            )
            if since is not None:
                charges = charges.filter(created_at__gte=since)
                refunds = refunds.filter(created_at__gte=since)
            out = [
                {
                    "kind": "charge",
                    "idempotency_key": c.idempotency_key,
                    "reference": c.reference,
                    "payment_id": c.payment_id,
                    "amount": c.amount,
                    "currency": c.currency,
                    "status": c.status,
                }
                for c in charges
            ]
            out += [
                {
                    "kind": "refund",
                    "idempotency_key": r.idempotency_key,
                    "reference": r.reference,
                    "payment_id": r.charge.payment_id,
                    "amount": r.amount,
                    "currency": r.currency,
                    "status": r.status,
                }
                for r in refunds
            ]
            return out

        return _db(load)
