"""Webhooks to merchants: outbox events -> deliveries -> signed POSTs.

Nothing here runs on the payment hot path. ``dispatch`` reads the ``Event``
table (the outbox; ``published_at`` belongs to the relay and is not used) behind
a per-endpoint cursor and writes one ``WebhookDelivery`` per (endpoint, event);
``deliver_due`` posts due deliveries outside any transaction, signed the
Standard Webhooks way (``webhook-id``, ``webhook-timestamp``,
``webhook-signature``), and retries failures on a schedule until a final
failure opens a dead letter. ``run_once`` (the beat task) does both.
"""

import base64
import json
import logging
import os
import random
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from core import jsoncodec
from core.errors import InvalidRequest
from payments import metrics
from payments.models import (
    Event,
    Merchant,
    Payment,
    Refund,
    WebhookDelivery,
    WebhookEndpoint,
    whd_id,
)
from payments.rendering import payment_render, refund_render
from payments.services.deadletters import dead_letter_record
from payments.state import EVENT_FOR_STATUS

logger = logging.getLogger(__name__)

EVENT_TYPES: tuple[str, ...] = tuple(
    sorted(
        set(EVENT_FOR_STATUS.values())
        | {"refund.created", "refund.succeeded", "refund.failed"}
    )
)
MAX_URL_LENGTH = 2048
DEAD_LETTER_STAGE = "webhook"
USER_AGENT = "Surge-Webhooks/1.0"

_DELIVERY = WebhookDelivery._meta.db_table
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


# --- Endpoints ---------------------------------------------------------------


def new_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(os.urandom(24)).decode("ascii")


def clean_url(url: str) -> str:
    """The endpoint URL, or InvalidRequest(param="url"); never echoes the input."""

    def refuse(message: str) -> InvalidRequest:
        return InvalidRequest(message, param="url", code="url_invalid")

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
            code="event_type_invalid",
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
            code="too_many_endpoints",
        )
    secret = new_secret()
    endpoint = WebhookEndpoint(
        merchant=merchant,
        url=url,
        enabled_events=events,
        secret=secret,
        cursor=id_at("evt", _now_ms() - 1, last=True),
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


# --- Ids as positions in time ------------------------------------------------


def id_at(prefix: str, ms: int, *, last: bool = False) -> str:
    """The smallest (``last``: largest) id ``core.ids.new_id(prefix)`` can make
    in millisecond ``ms``; ids sort by their leading timestamp, so this is a
    position in the id order."""
    n = (ms << 80) | (((1 << 80) - 1) if last else 0)
    n <<= 2  # base32 of 16 bytes is 130 bits: two zero bits pad the end
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[n & 31])
        n >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- Dispatch: events -> deliveries ------------------------------------------


def horizon_ms() -> int | None:
    """The millisecond before which every event is committed (or never will be).

    Event ids are made by the writer (``new_id``: its clock, before or during
    its transaction) but become visible at commit, which can come later and in
    another order. A cursor that jumped past an id whose transaction had not
    committed yet would skip that event forever. So dispatch only reads events
    older than the start of the oldest transaction still in progress that has
    written something (``pg_stat_activity.backend_xid`` is set at the first
    write; ``xact_start`` is when it began, so its ids are not older), other than
    our own, in this database; and never newer than now. The margin
    (``WEBHOOK_HORIZON_MARGIN_SECONDS``) covers clock skew between application
    servers and the database and the moment between making an id in Python and
    the INSERT that assigns the transaction its xid. A transaction that stays
    open holds webhooks back for as long (logged past a minute), never loses
    one.

    Returns None when a writing transaction's start is hidden from us (the
    database role lacks ``pg_read_all_stats``): nothing can be proven, so
    nothing is dispatched. SQLite (embedded mode) has no such view: now - margin.
    """
    now = _now_ms()
    margin = round(settings.WEBHOOK_HORIZON_MARGIN_SECONDS * 1000)
    if connection.vendor != "postgresql":
        return now - margin
    with connection.cursor() as cursor:
        # pg_stat_activity is a snapshot taken once per transaction: refresh it.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FILTER (WHERE xact_start IS NULL), min(xact_start), "
            "(array_agg(pid ORDER BY xact_start))[1] FROM pg_stat_activity "
            "WHERE backend_xid IS NOT NULL AND datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        hidden, oldest, pid = cursor.fetchone()
    if hidden:
        logger.warning(
            "webhook dispatch waits: %d writing transaction(s) whose start is "
            "hidden (grant pg_read_all_stats to the application role)",
            hidden,
        )
        return None
    horizon = now
    if oldest is not None:
        horizon = min(horizon, int(oldest.timestamp() * 1000))
        if now - horizon > 60_000:
            logger.warning(
                "webhook dispatch held back %.0f s by the transaction of pid %s",
                (now - horizon) / 1000,
                pid,
            )
    return horizon - margin


def dispatch(*, batch_size: int = 2000, max_rounds: int = 20) -> dict[str, int]:
    """Turn new events of every active endpoint's merchant into deliveries."""
    totals: Counter[str] = Counter()
    for _ in range(max_rounds):
        events, deliveries, more = _dispatch_round(batch_size)
        totals["events"] += events
        totals["deliveries"] += deliveries
        if not more:
            break
    return dict(totals)


def _dispatch_round(batch_size: int) -> tuple[int, int, bool]:
    """One transaction: lock the endpoints, read events past their cursors up to
    the horizon, insert deliveries (ON CONFLICT DO NOTHING), advance cursors.

    ``FOR UPDATE SKIP LOCKED`` on the endpoints keeps two overlapping runs off
    the same endpoint; the unique (endpoint, event) is the last guard.
    """
    with transaction.atomic():
        horizon = horizon_ms()
        if horizon is None:
            return 0, 0, False
        below = id_at("evt", horizon)  # events with a smaller id are final
        top = id_at("evt", horizon - 1, last=True)  # the largest such id
        endpoints = list(
            WebhookEndpoint.objects.select_for_update(skip_locked=True)
            .filter(status=WebhookEndpoint.Status.ACTIVE, cursor__lt=top)
            .only("id", "merchant_id", "enabled_events", "cursor")
        )
        if not endpoints:
            return 0, 0, False
        by_merchant: dict[str, list[WebhookEndpoint]] = defaultdict(list)
        for endpoint in endpoints:
            by_merchant[endpoint.merchant_id].append(endpoint)
        rows = list(
            Event.objects.filter(
                merchant_id__in=list(by_merchant),
                id__gt=min(e.cursor for e in endpoints),
                id__lt=below,
            )
            .order_by("id")
            .values_list(
                "id", "type", "merchant_id", "payment_id", "data", "created_at"
            )[:batch_size]
        )
        more = len(rows) == batch_size
        bound = rows[-1][0] if more else top
        wanted = [
            (endpoint, row)
            for row in rows
            for endpoint in by_merchant[row[2]]
            if row[0] > endpoint.cursor
            and (not endpoint.enabled_events or row[1] in endpoint.enabled_events)
        ]
        payloads = _payloads({row[0]: row for _, row in wanted}.values())
        now = timezone.now()
        # Ids of one millisecond sort randomly: hand them out sorted, so the
        # deliveries list (newest first, by id) follows the events' order.
        ids = sorted(whd_id() for _ in wanted)
        WebhookDelivery.objects.bulk_create(
            [
                WebhookDelivery(
                    id=delivery_id,
                    endpoint_id=endpoint.pk,
                    event_id=row[0],
                    event_type=row[1],
                    payment_id=row[3] or "",
                    payload=payloads[row[0]],
                    next_attempt_at=now,
                )
                for delivery_id, (endpoint, row) in zip(ids, wanted, strict=True)
            ],
            batch_size=1000,
            ignore_conflicts=True,
        )
        WebhookEndpoint.objects.filter(
            pk__in=[e.pk for e in endpoints], cursor__lt=bound
        ).update(cursor=bound)
    return len(rows), len(wanted), more


def _payloads(rows: Iterable[tuple]) -> dict[str, dict]:
    """Event id -> ``{id, object, type, created, data: {object}}``, the object
    rendered as the API renders it (a payment, or a refund for refund events).
    Payments hold only a token id; no card data can appear."""
    rows = list(rows)
    refund_ids = {r[4].get("refund") for r in rows if r[1].startswith("refund.")}
    payment_ids = {r[3] for r in rows if r[3]}
    refunds = {r.pk: r for r in Refund.objects.filter(pk__in=refund_ids - {None})}
    payments = {p.pk: p for p in Payment.objects.filter(pk__in=payment_ids)}
    out = {}
    for event_id, event_type, _merchant, payment_id, data, created_at in rows:
        refund = refunds.get((data or {}).get("refund"))
        if refund is not None:
            obj = refund_render(refund)
        elif payment_id in payments:
            obj = payment_render(payments[payment_id])
        else:
            obj = {"id": payment_id, "object": "payment"}
        out[event_id] = {
            "id": event_id,
            "object": "event",
            "type": event_type,
            "created": int(created_at.timestamp()),
            "data": {"object": obj},
        }
    return out


# --- Delivery: signed POSTs ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Claim:
    id: str
    endpoint_id: str
    event_id: str
    payment_id: str
    payload: dict
    attempts: int  # including this one


@dataclass(frozen=True, slots=True)
class _Target:
    url: str
    signer: Webhook | None  # None: the endpoint is disabled


@dataclass(frozen=True, slots=True)
class _Outcome:
    claim: _Claim
    status_code: int | None
    error: str
    give_up: bool = False  # no retry (endpoint disabled)

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def deliver_due(*, budget_seconds: float = 10.0) -> dict[str, int]:
    """Post due deliveries in claimed batches until none is due or the budget
    is spent; return counts by outcome. Must not run inside a transaction."""
    _require_no_transaction()
    totals: Counter[str] = Counter()
    deadline = time.monotonic() + budget_seconds
    while True:
        claims = _claim(settings.WEBHOOK_BATCH_SIZE)
        if not claims:
            break
        for outcome, n in _record(_post_all(claims, _targets(claims))).items():
            totals[outcome] += n
        if len(claims) < settings.WEBHOOK_BATCH_SIZE or time.monotonic() > deadline:
            break
    return dict(totals)


def _require_no_transaction() -> None:
    """No transaction (nor row lock) may be held across the HTTP calls."""
    if connection.in_atomic_block:
        raise RuntimeError("deliver_due posts over HTTP: call it outside atomic().")


def _claim(limit: int) -> list[_Claim]:
    """Lease up to ``limit`` due deliveries: one committed UPDATE that moves
    ``next_attempt_at`` a lease ahead and counts the attempt, so a worker killed
    mid-post leaves them due again after the lease, and two workers never
    claim the same row (SKIP LOCKED)."""
    now = timezone.now()
    lease_until = now + timedelta(seconds=settings.WEBHOOK_LEASE_SECONDS)
    pending = WebhookDelivery.Status.PENDING
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {_DELIVERY} SET next_attempt_at = %s, "  # noqa: S608
                    "attempts = attempts + 1 WHERE status = %s AND id IN ("
                    f"SELECT id FROM {_DELIVERY} WHERE status = %s AND "
                    "next_attempt_at <= %s ORDER BY next_attempt_at LIMIT %s "
                    "FOR UPDATE SKIP LOCKED) RETURNING "
                    "id, endpoint_id, event_id, payment_id, payload, attempts",
                    [lease_until, pending, pending, now, limit],
                )
                rows = cursor.fetchall()
        else:  # SQLite: IMMEDIATE transactions already serialize writers
            due = WebhookDelivery.objects.filter(
                status=pending, next_attempt_at__lte=now
            )
            ids = list(
                due.order_by("next_attempt_at").values_list("pk", flat=True)[:limit]
            )
            WebhookDelivery.objects.filter(pk__in=ids, status=pending).update(
                next_attempt_at=lease_until, attempts=F("attempts") + 1
            )
            rows = list(
                WebhookDelivery.objects.filter(pk__in=ids).values_list(
                    "id", "endpoint_id", "event_id", "payment_id", "payload", "attempts"
                )
            )
    return [
        _Claim(
            id=r[0],
            endpoint_id=r[1],
            event_id=r[2],
            payment_id=r[3],
            payload=json.loads(r[4]) if isinstance(r[4], str) else r[4],
            attempts=r[5],
        )
        for r in rows
    ]


def _targets(claims: Sequence[_Claim]) -> dict[str, _Target]:
    """Open each endpoint's secret once, here, before any thread starts."""
    targets = {}
    for endpoint in WebhookEndpoint.objects.filter(
        pk__in={c.endpoint_id for c in claims}
    ):
        active = endpoint.status == WebhookEndpoint.Status.ACTIVE
        targets[endpoint.pk] = _Target(
            url=endpoint.url, signer=Webhook(endpoint.secret) if active else None
        )
    return targets


def _post_all(claims: Sequence[_Claim], targets: dict[str, _Target]) -> list[_Outcome]:
    """POST every claim with bounded concurrency and no database access.

    A payment's events to one endpoint go one after another in id order (a
    receiver sees created before settled when both are due together); different
    payments and endpoints go in parallel. Order across retries is not
    guaranteed: receivers should use the event type and ids, as with Stripe.
    """
    chains: dict[tuple[str, str], list[_Claim]] = defaultdict(list)
    for claim in sorted(claims, key=lambda c: c.event_id):
        chains[(claim.endpoint_id, claim.payment_id or claim.event_id)].append(claim)
    workers = max(1, min(settings.WEBHOOK_CONCURRENCY, len(chains)))
    timeout = httpx.Timeout(
        settings.WEBHOOK_READ_TIMEOUT, connect=settings.WEBHOOK_CONNECT_TIMEOUT
    )
    with (
        httpx.Client(
            timeout=timeout,
            follow_redirects=False,
            limits=httpx.Limits(
                max_connections=workers, max_keepalive_connections=workers
            ),
        ) as client,
        ThreadPoolExecutor(workers, thread_name_prefix="webhook") as pool,
    ):
        results = pool.map(
            lambda chain: [
                _post_one(client, claim, targets.get(claim.endpoint_id))
                for claim in chain
            ],
            chains.values(),
        )
        return [outcome for chain in results for outcome in chain]


def _post_one(client: httpx.Client, claim: _Claim, target: _Target | None) -> _Outcome:
    if target is None or target.signer is None:
        return _Outcome(claim, None, "endpoint disabled", give_up=True)
    body = jsoncodec.compact(claim.payload)
    now = datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": claim.event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": target.signer.sign(claim.event_id, now, body),
    }
    try:
        # The body of the answer is never read: only the status counts.
        with client.stream(
            "POST", target.url, content=body.encode(), headers=headers
        ) as response:
            code = response.status_code
    except httpx.HTTPError as exc:
        return _Outcome(claim, None, type(exc).__name__)
    except Exception as exc:  # a bad URL or a library error must not lose the batch
        logger.warning("webhook %s: %s", claim.id, type(exc).__name__)
        return _Outcome(claim, None, type(exc).__name__)
    return _Outcome(claim, code, "" if 200 <= code < 300 else f"HTTP {code}")


def backoff(attempts: int) -> timedelta:
    """Wait after the ``attempts``-th failed attempt: the schedule entry +-20%."""
    schedule = settings.WEBHOOK_RETRY_SCHEDULE
    base = schedule[min(attempts, len(schedule)) - 1]
    return timedelta(seconds=base * random.uniform(0.8, 1.2))


def _record(outcomes: Sequence[_Outcome]) -> Counter[str]:
    """Store every outcome in one transaction; each update is conditional so a
    delivery another worker re-claimed after our lease ran out is not clobbered
    (only a success is recorded whatever happened since: it was delivered)."""
    now = timezone.now()
    max_attempts = len(settings.WEBHOOK_RETRY_SCHEDULE) + 1
    counts: Counter[str] = Counter()
    pending = WebhookDelivery.Status.PENDING
    with transaction.atomic():
        for outcome in outcomes:
            claim = outcome.claim
            rows = WebhookDelivery.objects.filter(pk=claim.id, status=pending)
            values = {
                "last_status_code": outcome.status_code,
                "last_error": outcome.error[:200],
            }
            if outcome.ok:
                counts["succeeded"] += rows.update(
                    status=WebhookDelivery.Status.SUCCEEDED,
                    next_attempt_at=None,
                    delivered_at=now,
                    **values,
                )
                continue
            rows = rows.filter(attempts=claim.attempts)
            if not outcome.give_up and claim.attempts < max_attempts:
                counts["retrying"] += rows.update(
                    next_attempt_at=now + backoff(claim.attempts), **values
                )
                continue
            failed = rows.update(
                status=WebhookDelivery.Status.FAILED, next_attempt_at=None, **values
            )
            counts["failed"] += failed
            if failed and not outcome.give_up:
                dead_letter_record(
                    stage=DEAD_LETTER_STAGE,
                    error_class="WebhookDeliveryFailed",
                    message=(
                        f"Webhook delivery {claim.id} of event {claim.event_id} to "
                        f"endpoint {claim.endpoint_id} failed after "
                        f"{claim.attempts} attempts (last: {outcome.error}). "
                        "Retry it from Webhook deliveries in the admin."
                    ),
                    payment_id=claim.payment_id or None,
                )
    for outcome, n in counts.items():
        metrics.webhook_deliveries(outcome, n)
    return counts


def run_once() -> dict[str, int]:
    """Dispatch new events, then deliver what is due (the beat task)."""
    result = dispatch()
    result.update(deliver_due())
    return result
