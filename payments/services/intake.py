"""Payment intake: validate, then write the key, the Payment and its outbox Event
in one statement."""

from contextlib import nullcontext
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from core.error_codes import ErrorCode as CoreCode
from core.errors import InvalidRequest
from core.ids import new_id
from core.money import is_currency
from core.tracing import current_traceparent
from payments import sql
from payments.error_codes import ErrorCode
from payments.models import Merchant
from payments.rendering import payment_render
from payments.services import idempotency
from payments.services.events import wake_due, wake_not_sent
from vault.selectors import token_owner


def check_amount_and_currency(
    *, merchant: Merchant, amount: int, currency: str
) -> None:
    """Merchant-specific rules; raise InvalidRequest naming the field."""
    if amount > merchant.amount_limit:
        raise InvalidRequest(
            f"Amount exceeds the maximum of {merchant.amount_limit}.",
            param="amount",
            code=ErrorCode.AMOUNT_TOO_LARGE,
        )
    if not is_currency(currency) or (
        merchant.currencies and currency not in merchant.currencies
    ):
        raise InvalidRequest(
            f"Currency {currency!r} is not supported for this merchant.",
            param="currency",
            code=ErrorCode.CURRENCY_NOT_SUPPORTED,
        )


def _check_payment(*, merchant: Merchant, amount: int, currency: str, source: str):
    check_amount_and_currency(merchant=merchant, amount=amount, currency=currency)
    if token_owner(source) != merchant.id:  # another merchant's token does not exist
        raise InvalidRequest(
            "No such token.", param="source", code=CoreCode.RESOURCE_MISSING
        )


def payment_accept(
    *,
    merchant: Merchant,
    key: str,
    path: str,
    req_hash: str,
    amount: int,
    currency: str,
    source: str,
    description: str = "",
    metadata: dict | None = None,
    customer: str = "",
) -> idempotency.StoredResponse:
    """``POST /v1/payments``: the payment once per Idempotency-Key, replayed after.

    One statement (``payments.sql.accept``), one round trip, its own
    transaction: the idempotency record, the payment, its event and the
    relays' wake-up. The stored response is rendered before the insert, from
    the row about to be written.
    """
    key_digest = idempotency.key_digest(key)
    try:
        _check_payment(
            merchant=merchant, amount=amount, currency=currency, source=source
        )
    except InvalidRequest:
        # A retry of a request that was accepted replays it even if the same
        # body would be refused today (the merchant's limit changed, say).
        record = idempotency.lookup(merchant, key_digest)
        if record is None:
            raise
        return idempotency.replay(record, method="POST", path=path, req_hash=req_hash)
    now = timezone.now()
    payment = sql.PaymentRow(
        id=new_id("pay"), merchant_id=merchant.id, amount=amount, currency=currency,
        source_id=source, description=description, metadata=metadata or {},
        customer=customer, created_at=now, updated_at=now,
    )  # fmt: skip
    body = payment_render(payment)
    expires_at = now + timedelta(seconds=settings.SURGE_IDEMPOTENCY_TTL_SECONDS)
    for _ in range(2):
        # The relays' wake-up rides in the same statement (a NOTIFY sent at
        # its commit, only if the payment was inserted).
        notify = wake_due()
        if _execute_accept(
            payment=payment, key=key_digest, path=path, request_hash=req_hash,
            response_body=body, expires_at=expires_at, event_id=new_id("evt"),
            notify=notify, traceparent=current_traceparent(),
        ):  # fmt: skip
            return idempotency.StoredResponse(202, body, False)
        if notify:
            wake_not_sent()
        record = idempotency.lookup(merchant, key_digest)
        if record is not None:
            return idempotency.replay(
                record, method="POST", path=path, req_hash=req_hash
            )
        # The key expired between the insert and the lookup: take it over.
    raise RuntimeError("Idempotency key neither inserted nor found.")


def _execute_accept(**params) -> bool:
    """``sql.accept``; True if the payment was inserted."""
    # A test (or a caller) may hold a transaction open: a savepoint keeps a
    # failed statement from aborting it. In autocommit the statement is its
    # own transaction and needs no BEGIN/COMMIT round trips.
    atomic = transaction.atomic() if connection.in_atomic_block else nullcontext()
    with atomic:
        return sql.accept(**params)
