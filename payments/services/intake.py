"""Payment intake: validate, then write the Payment and its outbox Event at once."""

from django.db import transaction

from core.errors import InvalidRequest
from core.money import is_currency
from payments.models import Event, Merchant, Payment
from payments.services.events import wake_relay
from payments.state import EVENT_FOR_STATUS, PaymentStatus
from vault.selectors import token_get_for_merchant


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
    check_amount_and_currency(merchant=merchant, amount=amount, currency=currency)
    token = token_get_for_merchant(token_id=source, merchant_id=merchant.id)
    if token is None:
        raise InvalidRequest("No such token.", param="source", code="resource_missing")
    with transaction.atomic(savepoint=False):
        payment = Payment.objects.create(
            merchant=merchant,
            amount=amount,
            currency=currency,
            source=token,
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
