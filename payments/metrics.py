"""Prometheus metrics. Counters and histograms are multiprocess-safe
(PROMETHEUS_MULTIPROC_DIR is set in settings before prometheus_client loads);
gauges that describe the database (outbox lag, queue depth, dead letters,
breaker state) are computed at scrape time by ``SurgeCollector``."""

from collections.abc import Iterable
from datetime import timedelta

from prometheus_client import Counter, Histogram

PAYMENTS_INITIATED = Counter(
    "surge_payments_initiated_total", "Payments accepted at intake.", ["channel"]
)
PAYMENTS_COMPLETED = Counter(
    "surge_payments_completed_total",
    "Payments that reached a final state.",
    ["status", "reason"],
)
SETTLE_LATENCY = Histogram(
    "surge_accept_to_settled_seconds",
    "Time from acceptance to settlement.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900),
)


def payments_initiated(count: int, channel: str = "single") -> None:
    if count:
        PAYMENTS_INITIATED.labels(channel).inc(count)


def payment_finished(status: str, reason: str, count: int) -> None:
    if count:
        PAYMENTS_COMPLETED.labels(status, reason or "").inc(count)


def payments_settled(latencies: Iterable[timedelta]) -> None:
    n = 0
    for latency in latencies:
        SETTLE_LATENCY.observe(latency.total_seconds())
        n += 1
    payment_finished("settled", "", n)


WEBHOOK_DELIVERIES = Counter(
    "surge_webhook_deliveries_total",
    "Webhook delivery attempts by outcome (succeeded, retrying, failed, paused).",
    ["outcome"],
)


def webhook_deliveries(outcome: str, count: int) -> None:
    if count:
        WEBHOOK_DELIVERIES.labels(outcome).inc(count)


RATE_LIMITED = Counter(
    "surge_rate_limited_total",
    "Requests refused with 429, by merchant and by the limit that refused them "
    "(key: the API key's rate; minute, hour: the merchant's payment quotas).",
    ["merchant", "layer"],
)
RATE_LIMITER_UNAVAILABLE = Counter(
    "surge_rate_limiter_unavailable_total",
    "Requests decided without the rate limiter (Redis down), by what was done "
    "(allowed: fail open; refused: fail closed).",
    ["outcome"],
)


def rate_limited(merchant_id: str, layer: str) -> None:
    RATE_LIMITED.labels(merchant_id, layer).inc()


def rate_limiter_unavailable(outcome: str) -> None:
    RATE_LIMITER_UNAVAILABLE.labels(outcome).inc()
