"""Delivery: claim due deliveries, POST them signed the Standard Webhooks way
(``webhook-id``, ``webhook-timestamp``, ``webhook-signature``) outside any
transaction, and record each outcome; failures retry on a schedule until a
final failure opens a dead letter."""

import json
import logging
import random
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from core import jsoncodec
from payments import metrics
from payments.models import WebhookDelivery, WebhookEndpoint
from payments.services.deadletters import dead_letter_record

logger = logging.getLogger(__name__)

DEAD_LETTER_STAGE = "webhook"
USER_AGENT = "Surge-Webhooks/1.0"

_DELIVERY = WebhookDelivery._meta.db_table


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
    with transaction.atomic(), connection.cursor() as cursor:
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
