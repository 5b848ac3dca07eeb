from datetime import datetime

from django.db.models import QuerySet

from core.ids import id_at
from payments.models import (
    Event,
    Merchant,
    Payment,
    WebhookDelivery,
    WebhookEndpoint,
)


def payment_get(*, merchant: Merchant, payment_id: str) -> Payment | None:
    return Payment.objects.filter(pk=payment_id, merchant=merchant).first()


def payment_list(
    *,
    merchant: Merchant,
    limit: int,
    starting_after: str | None = None,
    status: str | None = None,
) -> tuple[list[Payment], bool]:
    """Newest first. Ids sort by creation time, so the cursor is the id itself."""
    qs = Payment.objects.filter(merchant=merchant)
    if status:
        qs = qs.filter(status=status)
    if starting_after:
        qs = qs.filter(pk__lt=starting_after)
    rows = list(qs.order_by("-pk")[: limit + 1])
    return rows[:limit], len(rows) > limit


def settled_payments(*, since=None):
    """Iterate (id, merchant_id, amount, currency, fee, gateway, gateway_reference)
    of settled payments, oldest first, in chunks: for reconciliation."""
    qs = Payment.objects.filter(status="settled")
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    return (
        qs.order_by("pk")
        .values_list(
            "id",
            "merchant_id",
            "amount",
            "currency",
            "fee",
            "gateway",
            "gateway_reference",
        )
        .iterator(chunk_size=5000)
    )


def webhook_endpoint_get(
    *, merchant: Merchant, endpoint_id: str
) -> WebhookEndpoint | None:
    return WebhookEndpoint.objects.filter(pk=endpoint_id, merchant=merchant).first()


def webhook_endpoint_list(*, merchant: Merchant) -> list[WebhookEndpoint]:
    """Newest first; a merchant has a handful (WEBHOOK_MAX_ENDPOINTS active)."""
    return list(WebhookEndpoint.objects.filter(merchant=merchant).order_by("-pk"))


def webhook_delivery_list(
    *, endpoint: WebhookEndpoint, limit: int, starting_after: str | None = None
) -> tuple[list[WebhookDelivery], bool]:
    """Newest first, cursor by id like the payments list."""
    qs = WebhookDelivery.objects.filter(endpoint=endpoint).defer("payload")
    if starting_after:
        qs = qs.filter(pk__lt=starting_after)
    rows = list(qs.order_by("-pk")[: limit + 1])
    return rows[:limit], len(rows) > limit


# Event ids are made (by time) just before their row's ``created_at`` is set;
# id bounds let the primary key narrow a time-range scan (with a wide margin),
# ``created_at`` decides.
_ID_MARGIN_MS = 10 * 60 * 1000


def events_created_between(
    events: QuerySet[Event], *, gte: datetime | None, lt: datetime | None
) -> QuerySet[Event]:
    """``events`` created in [gte, lt)."""
    if gte is not None:
        low = id_at("evt", int(gte.timestamp() * 1000) - _ID_MARGIN_MS)
        events = events.filter(created_at__gte=gte, id__gte=low)
    if lt is not None:
        high = id_at("evt", int(lt.timestamp() * 1000) + _ID_MARGIN_MS)
        events = events.filter(created_at__lt=lt, id__lt=high)
    return events


def event_get(*, merchant: Merchant, event_id: str) -> Event | None:
    return Event.objects.filter(pk=event_id, merchant_id=merchant.pk).first()


def event_list(
    *,
    merchant: Merchant,
    limit: int,
    starting_after: str | None = None,
    type: str | None = None,
    created_gte: datetime | None = None,
    created_lt: datetime | None = None,
) -> tuple[list[Event], bool]:
    """Newest first, cursor by id like the payments list."""
    qs = events_created_between(
        Event.objects.filter(merchant_id=merchant.pk), gte=created_gte, lt=created_lt
    )
    if type:
        qs = qs.filter(type=type)
    if starting_after:
        qs = qs.filter(pk__lt=starting_after)
    rows = list(qs.order_by("-pk")[: limit + 1])
    return rows[:limit], len(rows) > limit
