"""Reads that are more than a .get(): the API's lists, reconciliation's scan,
the events API, and a payment's whole story for the admin."""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet

from core.ids import id_at, id_timestamp_ms
from gateways.selectors import GatewayAttempt, attempts_for_payment, route_keys
from ledger.selectors import PostingLine, postings_for_references
from payments.models import (
    AuditLog,
    DeadLetter,
    Event,
    Merchant,
    Payment,
    Refund,
    WebhookDelivery,
    WebhookEndpoint,
)
from vault.selectors import token_card_summary


def _storable(object_id: str) -> bool:
    """An id PostgreSQL can compare: a NUL (a URL's %00) is no id of ours,
    and text cannot hold it (the query itself would fail: a 500)."""
    return "\x00" not in object_id


def payment_get(*, merchant: Merchant, payment_id: str) -> Payment | None:
    if not _storable(payment_id):
        return None
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


def refund_get(*, merchant: Merchant, refund_id: str) -> Refund | None:
    """The merchant's refund, or None (another merchant's is None too)."""
    if not _storable(refund_id):
        return None
    return Refund.objects.filter(pk=refund_id, payment__merchant=merchant).first()


def refund_list(
    *, payment: Payment, limit: int, starting_after: str | None = None
) -> tuple[list[Refund], bool]:
    """A payment's refunds, newest first, cursor by id like the payments list."""
    qs = Refund.objects.filter(payment=payment)
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


# Events a payment page lists at most (a payment has a handful; replays and
# refunds add a few).
TIMELINE_LIMIT = 500
# Events are looked for from this long before the payment's id was made: the
# clocks of the processes that write them may differ a little.
_CLOCK_MARGIN_MS = 60_000


def payment_events(*, payment: Payment) -> list[Event]:
    """The payment's events, oldest first.

    Events carry no index on payment (written five times per payment, read by
    people only); ids sort by time, so the read is a primary-key range from
    the payment's creation on, not a scan of the whole outbox.
    """
    since = max(0, (id_timestamp_ms(payment.pk) or 0) - _CLOCK_MARGIN_MS)
    return list(
        Event.objects.filter(pk__gte=id_at("evt", since), payment_id=payment.pk)
        .order_by("pk")
        .only("id", "type", "data", "created_at", "published_at")[:TIMELINE_LIMIT]
    )


def audit_records_for_payment(*, payment_id: str) -> list[AuditLog]:
    """Every audit record about the payment or one of its dead letters or
    refunds, oldest first."""
    return list(AuditLog.objects.filter(payment_id=payment_id).order_by("pk"))


def audit_records_for(*, obj) -> list[AuditLog]:
    return list(
        AuditLog.objects.filter(
            object_type=type(obj).__name__, object_id=str(obj.pk)
        ).order_by("pk")
    )


@dataclass(frozen=True, slots=True)
class PaymentStory:
    """Everything an operator needs to see about one payment; the card only as
    brand and last4."""

    card: tuple[str, str] | None
    events: list[Event]
    route_keys: list[str]
    gateway_attempts: list[GatewayAttempt]
    refunds: list[Refund]
    postings: list[PostingLine]
    dead_letters: list[DeadLetter]
    audit: list[AuditLog]


def payment_story(*, payment: Payment) -> PaymentStory:
    refunds = list(payment.refunds.order_by("pk"))
    return PaymentStory(
        card=token_card_summary(payment.source_id),
        events=payment_events(payment=payment),
        route_keys=route_keys(
            payment_id=payment.pk,
            primary=payment.merchant.primary_gateway,
            secondary=payment.merchant.secondary_gateway,
        ),
        gateway_attempts=attempts_for_payment(payment_id=payment.pk),
        refunds=refunds,
        postings=postings_for_references([payment.pk, *(r.pk for r in refunds)]),
        dead_letters=list(payment.dead_letters.order_by("first_seen")),
        audit=audit_records_for_payment(payment_id=payment.pk),
    )
