from payments.models import (
    Merchant,
    Payment,
    Refund,
    WebhookDelivery,
    WebhookEndpoint,
)


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
