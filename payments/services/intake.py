"""Payment intake: validate, then write the Payment and its outbox Event at once."""

import json
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from core.errors import InvalidRequest
from core.ids import new_id
from core.money import is_currency
from core.sql import pg_cursor
from payments.models import Event, IdempotencyKey, Merchant, Payment
from payments.services import idempotency
from payments.services.events import (
    NOTIFY_CHANNEL,
    wake_due,
    wake_not_sent,
    wake_relay,
)
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


@dataclass(slots=True)
class AcceptedPayment:
    """A payment intake is accepting, as ``render`` sees it: a Payment's fields
    without a model instance (making one was 8% of intake's CPU)."""

    id: str
    merchant_id: str
    amount: int
    currency: str
    source_id: str
    description: str
    metadata: dict
    created_at: datetime
    updated_at: datetime
    status: str = PaymentStatus.PENDING
    amount_refunded: int = 0
    failure_code: str = ""
    failure_message: str = ""
    reference: str | None = None
    batch_id: str | None = None
    settled_at: datetime | None = None


def payment_accept(
    *,
    merchant: Merchant,
    key: str,
    path: str,
    req_hash: str,
    render: Callable[[Payment | AcceptedPayment], dict],
    amount: int,
    currency: str,
    source: str,
    description: str = "",
    metadata: dict | None = None,
) -> idempotency.StoredResponse:
    """``POST /v1/payments``: the payment once per Idempotency-Key, replayed after.

    On PostgreSQL this is one statement, one round trip, its own transaction:
    the idempotency record is inserted first (``ON CONFLICT`` on the key: a
    live key inserts nothing, an expired one is taken over), and the payment
    and its event are inserted only from the row that insert returned. A
    concurrent request with the same key waits on the key's unique index until
    the first commits, inserts nothing, and replays the stored response. The
    statement is prepared once per connection (server-side binding).
    """
    if connection.vendor != "postgresql":
        return idempotency.idempotent_call(
            merchant=merchant, key=key, method="POST", path=path, req_hash=req_hash,
            work=lambda: (202, render(payment_create(
                merchant=merchant, amount=amount, currency=currency, source=source,
                description=description, metadata=metadata,
            ))),
        )  # fmt: skip
    try:
        _check_payment(
            merchant=merchant, amount=amount, currency=currency, source=source
        )
    except InvalidRequest:
        # A retry of a request that was accepted replays it even if the same
        # body would be refused today (the merchant's limit changed, say).
        record = idempotency.lookup(merchant, key)
        if record is None:
            raise
        return idempotency.replay(record, method="POST", path=path, req_hash=req_hash)
    now = timezone.now()
    payment = AcceptedPayment(
        id=new_id("pay"), merchant_id=merchant.id, amount=amount, currency=currency,
        source_id=source, description=description, metadata=metadata or {},
        created_at=now, updated_at=now,
    )  # fmt: skip
    body = render(payment)
    params = [
        merchant.id, key, path, req_hash, json.dumps(body), now,
        now + timedelta(seconds=settings.SURGE_IDEMPOTENCY_TTL_SECONDS),
        payment.id, amount, currency, source, description,
        json.dumps(payment.metadata), now,
        new_id("evt"), json.dumps({"amount": amount, "currency": currency}),
    ]  # fmt: skip
    for _ in range(2):
        # The relays' wake-up goes in the same statement (a NOTIFY sent at its
        # commit, only if the payment was inserted): a second round trip and
        # transaction for it cost 4% of the web's CPU.
        notify = wake_due()
        if _execute_accept([*params, notify]):
            return idempotency.StoredResponse(202, body, False)
        if notify:
            wake_not_sent()
        record = idempotency.lookup(merchant, key)
        if record is not None:
            return idempotency.replay(
                record, method="POST", path=path, req_hash=req_hash
            )
        # The key expired between the insert and the lookup: take it over.
    raise RuntimeError("Idempotency key neither inserted nor found.")


def _execute_accept(params: list) -> bool:
    """Run ``_ACCEPT_SQL``; True if the payment was inserted."""
    # A test (or a caller) may hold a transaction open: a savepoint keeps a
    # failed statement from aborting it. In autocommit the statement is its
    # own transaction and needs no BEGIN/COMMIT round trips.
    atomic = transaction.atomic() if connection.in_atomic_block else nullcontext()
    with atomic, pg_cursor() as cursor:
        cursor.execute(_ACCEPT_SQL, params, prepare=True)
        return cursor.fetchone()[0] == 1


_ACCEPT_SQL = f"""
WITH k AS (
    INSERT INTO {IdempotencyKey._meta.db_table} AS k (
        merchant_id, "key", method, path, request_hash, response_status,
        response_body, created_at, expires_at
    ) VALUES (%s, %s, 'POST', %s, %s, 202, %s::jsonb, %s, %s)
    ON CONFLICT (merchant_id, "key") DO UPDATE SET
        method = EXCLUDED.method, path = EXCLUDED.path,
        request_hash = EXCLUDED.request_hash,
        response_status = EXCLUDED.response_status,
        response_body = EXCLUDED.response_body,
        created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at
    WHERE k.expires_at <= EXCLUDED.created_at
    RETURNING k.merchant_id, k.created_at
), p AS (
    INSERT INTO {Payment._meta.db_table} (
        id, merchant_id, amount, currency, source_id, description, metadata,
        status, failure_code, failure_message, gateway, gateway_reference,
        attempts, amount_refunded, created_at, updated_at
    )
    SELECT %s, k.merchant_id, %s, %s, %s, %s, %s::jsonb,
        '{PaymentStatus.PENDING}', '', '', '', '', 0, 0, k.created_at, %s
    FROM k
    RETURNING id, merchant_id, created_at
), e AS (
    INSERT INTO {Event._meta.db_table}
        (id, type, merchant_id, payment_id, data, created_at)
    SELECT %s, '{EVENT_FOR_STATUS[PaymentStatus.PENDING]}', p.merchant_id, p.id,
        %s::jsonb, p.created_at
    FROM p
), n AS (
    SELECT pg_notify('{NOTIFY_CHANNEL}', '') FROM p WHERE %s
)
SELECT count(*), (SELECT count(*) FROM n) FROM p
"""  # noqa: S608 (table names and constants only)
