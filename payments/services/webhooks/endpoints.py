"""Webhook endpoints: create, update, rotate the secret, disable and re-enable,
resend events, retry failed deliveries. Called by the API, the admin,
operations and delivery (which disables an endpoint that keeps failing)."""

import base64
import logging
import os
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.utils import timezone

from core.errors import Conflict, InvalidRequest
from payments.error_codes import ErrorCode
from payments.exceptions import EventNotFound
from payments.models import Event, Merchant, WebhookDelivery, WebhookEndpoint
from payments.selectors import events_created_between
from payments.services.webhooks import egress
from payments.services.webhooks.dispatch import (
    deliveries_create,
    event_payloads,
    id_at,
    now_ms,
)
from payments.state import EVENT_FOR_STATUS

logger = logging.getLogger(__name__)

EVENT_TYPES: tuple[str, ...] = tuple(
    sorted(
        set(EVENT_FOR_STATUS.values())
        | {"refund.created", "refund.succeeded", "refund.failed"}
    )
)
MAX_URL_LENGTH = 2048
MAX_DESCRIPTION_LENGTH = 500
# Rotation: how long the replaced secret keeps signing, by default and at most.
ROTATION_OVERLAP_SECONDS = 24 * 3600
MAX_ROTATION_OVERLAP_SECONDS = 7 * 24 * 3600
# A resend by time range covers at most this many events (narrow the range).
RESEND_MAX_EVENTS = 1000

_UNSET: Any = object()


def new_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(os.urandom(24)).decode("ascii")


def clean_url(url: str) -> str:
    """The endpoint URL, or InvalidRequest(param="url"); never echoes the input.

    Besides its shape, the host must resolve only to addresses Surge may send
    to (``egress``): checked here, at registration, and again at every delivery.
    """

    def refuse(message: str, code: str = ErrorCode.URL_INVALID) -> InvalidRequest:
        return InvalidRequest(message, param="url", code=code)

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
    try:
        egress.check(url)
    except egress.EgressRefused as exc:
        raise refuse(
            f"url is refused: its host {exc.reason}. Webhooks go only to public "
            "addresses.",
            code=ErrorCode.URL_ADDRESS_REFUSED,
        ) from None
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


def clean_description(value: str | None) -> str:
    value = (value or "").strip()
    if len(value) > MAX_DESCRIPTION_LENGTH:
        raise InvalidRequest(
            f"description must be at most {MAX_DESCRIPTION_LENGTH} characters.",
            param="description",
        )
    return value


def _check_endpoint_count(merchant_id: str) -> None:
    active = WebhookEndpoint.objects.filter(
        merchant_id=merchant_id, status=WebhookEndpoint.Status.ACTIVE
    ).count()
    if active >= settings.WEBHOOK_MAX_ENDPOINTS:
        raise InvalidRequest(
            f"A merchant may have at most {settings.WEBHOOK_MAX_ENDPOINTS} active "
            "webhook endpoints.",
            param="url",
            code=ErrorCode.TOO_MANY_ENDPOINTS,
        )


def _cursor_now() -> str:
    """A cursor that makes an endpoint receive the events made from now on."""
    return id_at("evt", now_ms() - 1, last=True)


def webhook_endpoint_create(
    *,
    merchant: Merchant,
    url: str,
    enabled_events: Sequence[str] | None = None,
    description: str | None = None,
) -> tuple[WebhookEndpoint, str]:
    """Create an active endpoint; return it and its secret (the only time it is
    returned in clear). It receives the events made from now on."""
    url = clean_url(url)
    events = clean_enabled_events(enabled_events)
    description = clean_description(description)
    _check_endpoint_count(merchant.pk)
    secret = new_secret()
    endpoint = WebhookEndpoint(
        merchant=merchant,
        url=url,
        enabled_events=events,
        description=description,
        secret=secret,
        cursor=_cursor_now(),
    )
    endpoint.save()
    return endpoint, secret


def webhook_endpoint_update(
    *,
    endpoint: WebhookEndpoint,
    url: str = _UNSET,
    enabled_events: Sequence[str] | None = _UNSET,
    description: str | None = _UNSET,
    status: str = _UNSET,
) -> WebhookEndpoint:
    """Change what is given; ``status="active"`` re-enables a disabled endpoint
    (``webhook_endpoint_enable``), ``"disabled"`` disables it. Everything is
    checked before anything is written."""
    changes: dict[str, Any] = {}
    if url is not _UNSET:
        changes["url"] = clean_url(url)
    if enabled_events is not _UNSET:
        changes["enabled_events"] = clean_enabled_events(enabled_events)
    if description is not _UNSET:
        changes["description"] = clean_description(description)
    Status = WebhookEndpoint.Status
    if status is not _UNSET and status not in Status.values:
        raise InvalidRequest("status must be active or disabled.", param="status")
    enable = status == Status.ACTIVE and endpoint.status == Status.DISABLED
    if enable:
        _check_endpoint_count(endpoint.merchant_id)
    with transaction.atomic():
        if changes:
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(**changes)
        if enable:
            webhook_endpoint_enable(endpoint=endpoint)
        elif status == Status.DISABLED:
            webhook_endpoint_disable(
                endpoint=endpoint, reason="Disabled through the API."
            )
    endpoint.refresh_from_db()
    return endpoint


def webhook_endpoint_rotate_secret(
    *,
    endpoint: WebhookEndpoint,
    expires_in: int = ROTATION_OVERLAP_SECONDS,
    now: datetime | None = None,
) -> tuple[WebhookEndpoint, str]:
    """Give the endpoint a new secret and return it (the only time it is
    returned in clear). The replaced one keeps signing, beside the new one, for
    ``expires_in`` seconds (0: stops at once). A rotation during an overlap
    replaces the older secret: at most two sign at once."""
    if not 0 <= expires_in <= MAX_ROTATION_OVERLAP_SECONDS:
        raise InvalidRequest(
            f"expires_in must be 0 to {MAX_ROTATION_OVERLAP_SECONDS} seconds.",
            param="expires_in",
        )
    now = now or timezone.now()
    secret = new_secret()
    with transaction.atomic():
        # The row lock orders concurrent rotations: each sees the other's secret.
        locked = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        locked.previous_secret = locked.secret if expires_in else None
        locked.previous_secret_expires_at = (
            now + timedelta(seconds=expires_in) if expires_in else None
        )
        locked.secret = secret
        locked.save(
            update_fields=["secret", "previous_secret", "previous_secret_expires_at"]
        )
    endpoint.refresh_from_db()
    return endpoint, secret


def signing_secrets(endpoint: WebhookEndpoint, *, now: datetime) -> list[str]:
    """The secrets that sign a delivery now: the current one, then the replaced
    one while its overlap lasts."""
    secrets = [endpoint.secret]
    expires = endpoint.previous_secret_expires_at
    if expires is not None and now < expires and endpoint.previous_secret:
        secrets.append(endpoint.previous_secret)
    return secrets


def webhook_endpoint_disable(
    *,
    endpoint: WebhookEndpoint,
    reason: str = "Disabled by an operator.",
) -> WebhookEndpoint:
    """Stop sending to ``endpoint`` at someone's request (idempotent). Its
    pending deliveries end ``failed`` ("endpoint disabled") when they come due,
    without a dead letter; re-enabling it starts with the events made then."""
    WebhookEndpoint.objects.filter(
        pk=endpoint.pk, status=WebhookEndpoint.Status.ACTIVE
    ).update(
        status=WebhookEndpoint.Status.DISABLED,
        disabled_at=timezone.now(),
        disabled_cause=WebhookEndpoint.DisabledCause.REQUESTED,
        disabled_reason=reason[:300],
    )
    endpoint.refresh_from_db()
    return endpoint


def webhook_endpoints_disable_failing(
    *, endpoint_ids: Iterable[str], now: datetime | None = None
) -> list[str]:
    """Disable the endpoints among ``endpoint_ids`` whose deliveries have all
    failed for ``WEBHOOK_DISABLE_AFTER`` seconds; pause their pending
    deliveries. Return the ids disabled. Runs in the caller's transaction."""
    window = settings.WEBHOOK_DISABLE_AFTER
    ids = list(endpoint_ids)
    if not window or not ids:
        return []
    now = now or timezone.now()
    disabled = []
    with transaction.atomic():
        failing = WebhookEndpoint.objects.select_for_update().filter(
            pk__in=ids,
            status=WebhookEndpoint.Status.ACTIVE,
            failing_since__lte=now - timedelta(seconds=window),
        )
        for endpoint_id, since in failing.values_list("pk", "failing_since"):
            reason = (
                "Disabled by Surge: every delivery has failed since "
                f"{since:%Y-%m-%d %H:%M} UTC ({_duration(window)} or more). "
                "Fix the endpoint, then re-enable it: its deliveries resume "
                "where they stopped."
            )
            WebhookEndpoint.objects.filter(pk=endpoint_id).update(
                status=WebhookEndpoint.Status.DISABLED,
                disabled_at=now,
                disabled_cause=WebhookEndpoint.DisabledCause.FAILING,
                disabled_reason=reason,
            )
            paused = WebhookDelivery.objects.filter(
                endpoint_id=endpoint_id, status=WebhookDelivery.Status.PENDING
            ).update(status=WebhookDelivery.Status.PAUSED, next_attempt_at=None)
            logger.warning(
                "webhook endpoint %s disabled: failing since %s; %d deliveries paused",
                endpoint_id,
                since.isoformat(),
                paused,
            )
            disabled.append(endpoint_id)
    return disabled


def _duration(seconds: int) -> str:
    if seconds % 86400 == 0:
        days = seconds // 86400
        return f"{days} day{'s' if days != 1 else ''}"
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{seconds} seconds"


def webhook_endpoint_enable(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """Re-enable a disabled endpoint (idempotent on an active one).

    Disabled by Surge for failing: it resumes where it stopped, its paused
    deliveries are due now and the events made meanwhile follow (the cursor
    did not move). Disabled at someone's request: it receives the events made
    from now on, as a new endpoint would.
    """
    Cause = WebhookEndpoint.DisabledCause
    now = timezone.now()
    with transaction.atomic():
        locked = (
            WebhookEndpoint.objects.select_for_update()
            .filter(pk=endpoint.pk, status=WebhookEndpoint.Status.DISABLED)
            .values_list("disabled_cause", flat=True)
            .first()
        )
        if locked is not None:
            values: dict[str, Any] = {
                "status": WebhookEndpoint.Status.ACTIVE,
                "disabled_at": None,
                "disabled_cause": Cause.NONE,
                "disabled_reason": "",
                "failing_since": None,
            }
            if locked == Cause.FAILING:
                WebhookDelivery.objects.filter(
                    endpoint_id=endpoint.pk, status=WebhookDelivery.Status.PAUSED
                ).update(status=WebhookDelivery.Status.PENDING, next_attempt_at=now)
            else:
                values["cursor"] = _cursor_now()
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(**values)
    endpoint.refresh_from_db()
    return endpoint


def webhook_endpoint_resend(
    *,
    endpoint: WebhookEndpoint,
    event_id: str | None = None,
    created_gte: datetime | None = None,
    created_lt: datetime | None = None,
) -> int:
    """Deliver again one event, or every event of the endpoint's types created
    in [``created_gte``, ``created_lt``); return how many. Each goes with its
    own id as ``webhook-id`` (the receiver's deduplication key), on a fresh
    retry schedule; an event the endpoint never had is delivered for the
    first time."""
    if endpoint.status != WebhookEndpoint.Status.ACTIVE:
        raise Conflict(
            "The webhook endpoint is disabled; re-enable it first.",
            param="id",
            code=ErrorCode.ENDPOINT_DISABLED,
        )
    events = Event.objects.filter(merchant_id=endpoint.merchant_id)
    if event_id is not None:
        rows = list(_event_rows(events.filter(pk=event_id)))
        if not rows:
            raise EventNotFound("No such event.", param="event")
        if endpoint.enabled_events and rows[0][1] not in endpoint.enabled_events:
            raise InvalidRequest(
                f"The endpoint does not receive {rows[0][1]} events.",
                param="event",
                code=ErrorCode.EVENT_TYPE_INVALID,
            )
    else:
        if created_gte is None or created_lt is None or created_gte >= created_lt:
            raise InvalidRequest(
                "Give an event, or created[gte] before created[lt].", param="event"
            )
        events = events_created_between(events, gte=created_gte, lt=created_lt)
        if endpoint.enabled_events:
            events = events.filter(type__in=endpoint.enabled_events)
        rows = list(_event_rows(events.order_by("id"))[: RESEND_MAX_EVENTS + 1])
        if len(rows) > RESEND_MAX_EVENTS:
            raise InvalidRequest(
                f"The range holds more than {RESEND_MAX_EVENTS} events; narrow it.",
                param="created",
                code=ErrorCode.TOO_MANY_EVENTS,
            )
    if not rows:
        return 0
    ids = [row[0] for row in rows]
    now = timezone.now()
    with transaction.atomic():
        again = WebhookDelivery.objects.filter(
            endpoint_id=endpoint.pk, event_id__in=ids
        ).exclude(status=WebhookDelivery.Status.PAUSED)
        known = set(again.values_list("event_id", flat=True))
        again.update(
            status=WebhookDelivery.Status.PENDING,
            attempts=0,
            next_attempt_at=now,
            delivered_at=None,
        )
        fresh = [row for row in rows if row[0] not in known]
        payloads = event_payloads(fresh)
        deliveries_create([(endpoint.pk, row) for row in fresh], payloads, now)
    return len(rows)


def _event_rows(events):
    return events.values_list(
        "id", "type", "merchant_id", "payment_id", "data", "created_at"
    )


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
