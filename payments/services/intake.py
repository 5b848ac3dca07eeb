"""Payment intake: validate, then write the Payment and its outbox Event at once."""

import json
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from core.errors import InvalidRequest
from core.ids import new_id
from core.money import is_currency
from payments.models import Event, IdempotencyKey, Merchant, Payment
from payments.services import idempotency
from payments.services.events import wake_relay
from payments.state import EVENT_FOR_STATUS, PaymentStatus
from vault.selectors import token_owner


def check_amount_and_currency(
    *, merchant: Merchant, amount: int, currency: str
) -> None:
    """Merchant-specific rules; raise InvalidRequest naming the field."""
    if amount > merchant.amount_limit:
        raise InvalidRequest(
            f"Amount exceeds the maximum of {merchant.amount_limit}.",
            param="amount",
            code="amount_too_large",
        )
    if not is_currency(currency) or (
        merchant.currencies and currency not in merchant.currencies
    ):
        raise InvalidRequest(
            f"Currency {currency!r} is not supported for this merchant.",
            param="currency",
            code="currency_not_supported",
        )


def _check_payment(*, merchant: Merchant, amount: int, currency: str, source: str):
    check_amount_and_currency(merchant=merchant, amount=amount, currency=currency)
    if token_owner(source) != merchant.id:  # another merchant's token does not exist
        raise InvalidRequest("No such token.", param="source", code="resource_missing")


def payment_create(
    *,
    merchant: Merchant,
    amount: int,
    currency: str,
    source: str,
    description: str = "",
    metadata: dict | None = None,
) -> Payment:
    """Accept a payment as ``pending`` with its ``payment.created`` event.

    Must run inside the caller's transaction when combined with other writes
    (the idempotency record); it opens its own savepoint otherwise.
    """
    _check_payment(merchant=merchant, amount=amount, currency=currency, source=source)
    with transaction.atomic(savepoint=False):
        payment = Payment.objects.create(
            merchant=merchant,
            amount=amount,
            currency=currency,
            source_id=source,
            description=description,
            metadata=metadata or {},
        )
        Event.objects.create(
            type=EVENT_FOR_STATUS[PaymentStatus.PENDING],
            merchant_id=merchant.id,
            payment=payment,
            data={"amount": amount, "currency": currency},
        )
        wake_relay()
    return payment


def payment_accept(
    *,
    merchant: Merchant,
    key: str,
    path: str,
    req_hash: str,
    render: Callable[[Payment], dict],
    amount: int,
    currency: str,
    source: str,
    description: str = "",
    metadata: dict | None = None,
) -> idempotency.StoredResponse:
    """``POST /v1/payments``: the payment once per Idempotency-Key, replayed after.

    On PostgreSQL the payment, its event and the idempotency record go in one
    statement (three CTE inserts, atomic in autocommit): one round trip
    instead of five. A concurrent request with the same key fails on the key's
    unique index and replays the winner's stored response.
    """
    existing = idempotency.lookup(merchant, key)
    if existing is not None:
        return idempotency.replay(existing, method="POST", path=path, req_hash=req_hash)
    if connection.vendor != "postgresql":
        return idempotency.idempotent_call(
            merchant=merchant, key=key, method="POST", path=path, req_hash=req_hash,
            work=lambda: (202, render(payment_create(
                merchant=merchant, amount=amount, currency=currency, source=source,
                description=description, metadata=metadata,
            ))),
        )  # fmt: skip
    _check_payment(merchant=merchant, amount=amount, currency=currency, source=source)
    now = timezone.now()
    payment = Payment(
        id=new_id("pay"), merchant_id=merchant.id, amount=amount, currency=currency,
        source_id=source, description=description, metadata=metadata or {},
        created_at=now, updated_at=now,
    )  # fmt: skip
    body = render(payment)
    expires = now + timedelta(seconds=settings.SURGE_IDEMPOTENCY_TTL_SECONDS)
    try:
        with transaction.atomic():
            wake_relay()
            with connection.cursor() as cursor:
                cursor.execute(
                    _ACCEPT_SQL,
                    [
                        payment.id, merchant.id, amount, currency, source,
                        description, json.dumps(payment.metadata), now, now,
                        new_id("evt"), merchant.id,
                        json.dumps({"amount": amount, "currency": currency}), now,
                        merchant.id, key, "POST", path, req_hash,
                        json.dumps(body), now, expires,
                    ],
                )  # fmt: skip
    except IntegrityError:
        record = idempotency.lookup(merchant, key)
        if record is None:
            raise
        return idempotency.replay(record, method="POST", path=path, req_hash=req_hash)
    return idempotency.StoredResponse(202, body, False)


_ACCEPT_SQL = f"""
WITH p AS (
    INSERT INTO {Payment._meta.db_table} (
        id, merchant_id, amount, currency, source_id, description, metadata,
        status, failure_code, failure_message, gateway, gateway_reference,
        attempts, amount_refunded, created_at, updated_at
    ) VALUES (
        %s, %s, %s, %s, %s, %s, %s::jsonb,
        '{PaymentStatus.PENDING}', '', '', '', '', 0, 0, %s, %s
    ) RETURNING id
), e AS (
    INSERT INTO {Event._meta.db_table}
        (id, type, merchant_id, payment_id, data, created_at)
    SELECT %s, '{EVENT_FOR_STATUS[PaymentStatus.PENDING]}', %s, p.id, %s::jsonb, %s
    FROM p
)
INSERT INTO {IdempotencyKey._meta.db_table} (
    merchant_id, key, method, path, request_hash, response_status,
    response_body, created_at, expires_at
)
SELECT %s, %s, %s, %s, %s, 202, %s::jsonb, %s, %s FROM p
"""  # noqa: S608 (table names and constants only)
