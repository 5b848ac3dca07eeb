"""Webhook endpoints: create (URL and event rules, signing secret), disable,
and retry failed deliveries. Called by the API, the admin and operations."""

import base64
import os
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.utils import timezone

from core.errors import InvalidRequest
from payments.error_codes import ErrorCode
from payments.models import Merchant, WebhookDelivery, WebhookEndpoint
from payments.services.webhooks.dispatch import id_at, now_ms
from payments.state import EVENT_FOR_STATUS

EVENT_TYPES: tuple[str, ...] = tuple(
    sorted(
        set(EVENT_FOR_STATUS.values())
        | {"refund.created", "refund.succeeded", "refund.failed"}
    )
)
MAX_URL_LENGTH = 2048


def new_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(os.urandom(24)).decode("ascii")


def clean_url(url: str) -> str:
    """The endpoint URL, or InvalidRequest(param="url"); never echoes the input."""

    def refuse(message: str) -> InvalidRequest:
        return InvalidRequest(message, param="url", code=ErrorCode.URL_INVALID)

    if len(url) > MAX_URL_LENGTH:
        raise refuse(f"url must be at most {MAX_URL_LENGTH} characters.")
    if any(c.isspace() or not c.isprintable() for c in url):
        raise refuse("url must not contain spaces or control characters.")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        raise refuse("url is not a valid URL.") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise refuse("url must be an http(s) URL.")
    if scheme == "http" and not (settings.DEBUG or settings.WEBHOOK_ALLOW_HTTP):
        raise refuse("url must use https.")
    if "@" in parts.netloc:
        raise refuse("url must not contain credentials.")
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError:
        raise refuse("url is not a valid URL.") from None
    return url


def clean_enabled_events(values: Sequence[str] | None) -> list[str]:
    """Known event types, sorted and unique; empty (or ``["*"]``) means all."""
    chosen = set(values or ())
    if chosen == {"*"}:
        return []
    if not chosen <= set(EVENT_TYPES):
        raise InvalidRequest(
            "enabled_events may only list known event types: "
            + ", ".join(EVENT_TYPES)
            + ".",
            param="enabled_events",
            code=ErrorCode.EVENT_TYPE_INVALID,
        )
    return sorted(chosen)


def webhook_endpoint_create(
    *, merchant: Merchant, url: str, enabled_events: Sequence[str] | None = None
) -> tuple[WebhookEndpoint, str]:
    """Create an active endpoint; return it and its secret (the only time it is
    returned in clear). It receives the events made from now on."""
    url = clean_url(url)
    events = clean_enabled_events(enabled_events)
    active = WebhookEndpoint.objects.filter(
        merchant=merchant, status=WebhookEndpoint.Status.ACTIVE
    ).count()
    if active >= settings.WEBHOOK_MAX_ENDPOINTS:
        raise InvalidRequest(
            f"A merchant may have at most {settings.WEBHOOK_MAX_ENDPOINTS} active "
            "webhook endpoints.",
            param="url",
            code=ErrorCode.TOO_MANY_ENDPOINTS,
        )
    secret = new_secret()
    endpoint = WebhookEndpoint(
        merchant=merchant,
        url=url,
        enabled_events=events,
        secret=secret,
        cursor=id_at("evt", now_ms() - 1, last=True),
    )
    endpoint.save()
    return endpoint, secret


def webhook_endpoint_disable(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """Stop sending to ``endpoint`` (idempotent). Its pending deliveries end
    ``failed`` ("endpoint disabled") when they come due, without a dead letter."""
    WebhookEndpoint.objects.filter(
        pk=endpoint.pk, status=WebhookEndpoint.Status.ACTIVE
    ).update(status=WebhookEndpoint.Status.DISABLED, disabled_at=timezone.now())
    endpoint.refresh_from_db()
    return endpoint


def webhook_delivery_retry(*, delivery_ids: Iterable[str]) -> int:
    """Make failed deliveries due now for one more attempt; return how many.

    Attempts are not reset: if that attempt fails too, the delivery is failed
    again (and its dead letter bumped) rather than starting the whole schedule.
    """
    return WebhookDelivery.objects.filter(
        pk__in=list(delivery_ids), status=WebhookDelivery.Status.FAILED
    ).update(
        status=WebhookDelivery.Status.PENDING,
        next_attempt_at=timezone.now(),
        delivered_at=None,
    )
