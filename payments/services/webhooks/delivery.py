"""Delivery: claim due deliveries, POST them signed the Standard Webhooks way
(``webhook-id``, ``webhook-timestamp``, ``webhook-signature``) outside any
transaction, to the address the SSRF guard checked (``egress``), and record
each outcome; failures retry on a schedule until a final failure opens a dead
letter. An endpoint whose attempts all fail for ``WEBHOOK_DISABLE_AFTER`` is
disabled and its pending deliveries paused."""

import json
import logging
import random
import ssl
import threading
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
from core.pan import redact_pans
from payments import metrics
from payments.models import WebhookDelivery, WebhookEndpoint
from payments.services.deadletters import dead_letter_record
from payments.services.webhooks import egress
from payments.services.webhooks.endpoints import (
    signing_secrets,
    webhook_endpoints_disable_failing,
)

logger = logging.getLogger(__name__)

DEAD_LETTER_STAGE = "webhook"
USER_AGENT = "Surge-Webhooks/1.0"
# The most of a receiver's answer that is read and kept (with the attempt).
RESPONSE_BODY_LIMIT = 4096

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
    # Current secret first, then a rotated-out one still in its overlap; empty:
    # the endpoint is disabled.
    signers: tuple[Webhook, ...]
    paused: bool = False  # disabled for failing: its deliveries wait

    def sign(self, msg_id: str, timestamp: datetime, body: str) -> str:
        """Every signature, space-separated, as Standard Webhooks allows."""
        return " ".join(s.sign(msg_id, timestamp, body) for s in self.signers)


@dataclass(frozen=True, slots=True)
class _Outcome:
    claim: _Claim
    status_code: int | None
    error: str
    give_up: bool = False  # no retry (endpoint disabled)
    pause: bool = False  # endpoint disabled for failing: wait for re-enabling
    response_body: str = ""

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
    # Partitioned by event id (month): rows are found by ``id = ANY`` on
    # each partition's (id, event_id) key, and the claimed event ids' range
    # lets the executor skip the other months (an ``id IN (subquery)`` join
    # was planned as a scan of every partition).
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"WITH c AS MATERIALIZED (SELECT id, event_id FROM {_DELIVERY} "  # noqa: S608
            "WHERE status = %s AND next_attempt_at <= %s "
            "ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED) "
            f"UPDATE {_DELIVERY} SET next_attempt_at = %s, "
            "attempts = attempts + 1 WHERE status = %s "
            "AND id = ANY(ARRAY(SELECT id FROM c)) "
            "AND event_id >= (SELECT min(event_id) FROM c) "
            "AND event_id <= (SELECT max(event_id) FROM c) RETURNING "
            "id, endpoint_id, event_id, payment_id, payload, attempts",
            [pending, now, limit, lease_until, pending],
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
    """Open each endpoint's secrets once, here, before any thread starts."""
    targets = {}
    now = timezone.now()
    for endpoint in WebhookEndpoint.objects.filter(
        pk__in={c.endpoint_id for c in claims}
    ):
        if endpoint.status != WebhookEndpoint.Status.ACTIVE:
            failing = endpoint.disabled_cause == WebhookEndpoint.DisabledCause.FAILING
            targets[endpoint.pk] = _Target(url=endpoint.url, signers=(), paused=failing)
            continue
        targets[endpoint.pk] = _Target(
            url=endpoint.url,
            signers=tuple(Webhook(s) for s in signing_secrets(endpoint, now=now)),
        )
    return targets


class _Clients:
    """One HTTP client per host name, made on first use. A kept-alive
    connection goes to an address whose certificate was checked for one name;
    it must not carry another name's request (two hosts on one address)."""

    # Certificates are checked against certifi's CAs; one context, built once
    # and shared (loading the CAs costs tens of milliseconds). Tests trust
    # their own CA here.
    verify: ssl.SSLContext | None = None

    def __init__(self, workers: int):
        if _Clients.verify is None:
            _Clients.verify = httpx.create_ssl_context(trust_env=False)
        self._workers = workers
        self._clients: dict[str, httpx.Client] = {}
        self._lock = threading.Lock()

    def get(self, host: str) -> httpx.Client:
        with self._lock:
            client = self._clients.get(host)
            if client is None:
                client = self._clients[host] = httpx.Client(
                    timeout=httpx.Timeout(
                        settings.WEBHOOK_READ_TIMEOUT,
                        connect=settings.WEBHOOK_CONNECT_TIMEOUT,
                    ),
                    follow_redirects=False,
                    verify=self.verify,
                    # The SSRF guard connects to the address it checked; a
                    # proxy from the environment would connect elsewhere.
                    trust_env=False,
                    limits=httpx.Limits(
                        max_connections=self._workers,
                        max_keepalive_connections=self._workers,
                    ),
                )
            return client

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


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
    clients = _Clients(workers)
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="webhook") as pool:
            results = pool.map(
                lambda chain: [
                    _post_one(clients, claim, targets.get(claim.endpoint_id))
                    for claim in chain
                ],
                chains.values(),
            )
            return [outcome for chain in results for outcome in chain]
    finally:
        clients.close()


def _post_one(clients: _Clients, claim: _Claim, target: _Target | None) -> _Outcome:
    if target is None or not target.signers:
        paused = target is not None and target.paused
        return _Outcome(claim, None, "endpoint disabled", give_up=True, pause=paused)
    try:
        # Resolved and checked now, at every attempt; the request goes to
        # this very address (DNS rebinding cannot swap it).
        pinned = egress.check(target.url)
    except egress.EgressRefused as exc:
        return _Outcome(claim, None, f"refused: {exc}")
    body = jsoncodec.compact(claim.payload)
    now = datetime.now(UTC)
    headers = {
        "host": pinned.host_header,
        "content-type": "application/json",
        "accept-encoding": "identity",  # the kept answer is read as sent
        "user-agent": USER_AGENT,
        "webhook-id": claim.event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": target.sign(claim.event_id, now, body),
    }
    extensions = {"sni_hostname": pinned.server_name} if pinned.server_name else {}
    try:
        with clients.get(pinned.host_header).stream(
            "POST",
            pinned.url,
            content=body.encode(),
            headers=headers,
            extensions=extensions,
        ) as response:
            code = response.status_code
            answer = _read_answer(response)
    except httpx.HTTPError as exc:
        return _Outcome(claim, None, type(exc).__name__)
    except Exception as exc:  # a bad URL or a library error must not lose the batch
        logger.warning("webhook %s: %s", claim.id, type(exc).__name__)
        return _Outcome(claim, None, type(exc).__name__)
    if 200 <= code < 300:
        error = ""
    elif 300 <= code < 400:
        error = f"HTTP {code} (redirects are not followed)"
    else:
        error = f"HTTP {code}"
    return _Outcome(claim, code, error, response_body=answer)


def _read_answer(response: httpx.Response) -> str:
    """At most ``RESPONSE_BODY_LIMIT`` bytes of the answer, as text; the rest
    is never read. A stalled or broken body keeps what arrived."""
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_raw(RESPONSE_BODY_LIMIT):
            chunks.append(chunk)
            size += len(chunk)
            if size >= RESPONSE_BODY_LIMIT:
                break
    except httpx.HTTPError:
        pass
    raw = b"".join(chunks)[:RESPONSE_BODY_LIMIT]
    # PostgreSQL text holds no NUL; the admin and the API show this text, and
    # no card number may appear there, whatever a receiver answers.
    return redact_pans(raw.decode("utf-8", "replace").replace("\x00", "\ufffd"))


def backoff(attempts: int) -> timedelta:
    """Wait after the ``attempts``-th failed attempt: the schedule entry +-20%."""
    schedule = settings.WEBHOOK_RETRY_SCHEDULE
    base = schedule[min(attempts, len(schedule)) - 1]
    return timedelta(seconds=base * random.uniform(0.8, 1.2))


def _record(outcomes: Sequence[_Outcome]) -> Counter[str]:
    """Store every outcome in one transaction; each update is conditional so a
    delivery another worker re-claimed after our lease ran out is not clobbered
    (only a success is recorded whatever happened since: it was delivered).

    Then track each endpoint's run of failures (``failing_since``: set by a
    failed attempt, cleared by a success) and disable those failing too long.
    """
    now = timezone.now()
    max_attempts = len(settings.WEBHOOK_RETRY_SCHEDULE) + 1
    counts: Counter[str] = Counter()
    pending = WebhookDelivery.Status.PENDING
    with transaction.atomic():
        for outcome in outcomes:
            claim = outcome.claim
            rows = WebhookDelivery.objects.filter(
                pk=claim.id, event_id=claim.event_id, status=pending
            )  # the event id names the partition
            values = {
                "last_status_code": outcome.status_code,
                "last_error": outcome.error[:200],
                "last_response_body": outcome.response_body,
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
            if outcome.pause:
                # Claimed just before its endpoint was disabled for failing:
                # it waits with the others. The attempt was not made.
                counts["paused"] += rows.update(
                    status=WebhookDelivery.Status.PAUSED,
                    next_attempt_at=None,
                    attempts=claim.attempts - 1,
                )
                continue
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
        _track_failing(outcomes, now=now)
    for outcome, n in counts.items():
        metrics.webhook_deliveries(outcome, n)
    return counts


def _track_failing(outcomes: Sequence[_Outcome], *, now: datetime) -> None:
    """A success ends an endpoint's run of failures; a failed attempt (a
    refused address included) starts one if none is running."""
    ok = {o.claim.endpoint_id for o in outcomes if o.ok}
    failed = {o.claim.endpoint_id for o in outcomes if not (o.ok or o.give_up)} - ok
    if ok:
        WebhookEndpoint.objects.filter(pk__in=ok, failing_since__isnull=False).update(
            failing_since=None
        )
    if failed:
        WebhookEndpoint.objects.filter(
            pk__in=failed, failing_since__isnull=True
        ).update(failing_since=now)
        webhook_endpoints_disable_failing(endpoint_ids=failed, now=now)
