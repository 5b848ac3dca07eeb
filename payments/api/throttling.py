"""Rate limits and quotas, the two layers: requests a second per API key (with
a burst), and payments a minute and an hour per merchant (a batch counts its
payments). Checked atomically in Redis by ``core.ratelimit``; every response
carries the IETF ``RateLimit-Policy`` and ``RateLimit`` fields of the limit
that binds tightest.

Redis down: the request is allowed (availability first) with a logged warning
and a metric, unless ``SURGE_RATE_LIMIT_FAIL_CLOSED`` is set.
"""

import functools
import logging
import time

from django.conf import settings
from rest_framework.exceptions import APIException, Throttled
from rest_framework.throttling import BaseThrottle

from core.error_codes import ErrorCode as CoreCode
from core.errors import InvalidRequest
from core.ratelimit import Bucket, Limiter, Unavailable, policy_headers
from payments import metrics
from payments.error_codes import ErrorCode

logger = logging.getLogger(__name__)

_limiter: Limiter | None = None
_warned_at = 0.0


def limiter() -> Limiter | None:
    """The process's limiter; None when rate limiting is off (no Redis)."""
    global _limiter
    if _limiter is None and settings.SURGE_RATE_LIMIT_ENABLED and settings.REDIS_URL:
        _limiter = Limiter(
            settings.REDIS_URL,
            timeout=settings.SURGE_RATE_LIMIT_TIMEOUT_SECONDS,
            lease=settings.SURGE_RATE_LIMIT_LEASE,
        )
    return _limiter


def reset_limiter() -> None:
    """Forget the process's limiter (settings changed: tests)."""
    global _limiter
    _limiter = None


def buckets_for(merchant, key_prefix: str, payments: int) -> tuple[Bucket, ...]:
    """The buckets a request takes from: its key's, and for a request that
    creates payments, its merchant's quotas. Merchant overrides win."""
    return _buckets(
        key_prefix,
        merchant.pk,
        merchant.rate_limit_per_second or settings.SURGE_RATE_LIMIT_PER_SECOND,
        merchant.rate_limit_burst or settings.SURGE_RATE_LIMIT_BURST,
        (merchant.payments_per_minute or settings.SURGE_PAYMENTS_PER_MINUTE)
        if payments
        else 0,
        merchant.payments_per_hour or settings.SURGE_PAYMENTS_PER_HOUR,
    )


@functools.lru_cache(maxsize=4096)
def _buckets(
    key_prefix: str, merchant_id: str, rate: int, burst: int, minute: int, hour: int
) -> tuple[Bucket, ...]:
    """The same limits make the same buckets: built once, not per request."""
    key = Bucket(f"key:{key_prefix}", "key", float(rate), max(burst, 1))
    if not minute:
        return (key,)
    return (
        key,
        Bucket(f"minute:{merchant_id}", "minute", minute / 60, minute),
        Bucket(f"hour:{merchant_id}", "hour", hour / 3600, hour),
    )


class LimiterUnavailable(APIException):
    status_code = 503
    default_code = CoreCode.API_ERROR
    default_detail = "Rate limiting is unavailable; retry shortly."


class MerchantRateThrottle(BaseThrottle):
    """DRF throttle for authenticated API requests (authentication runs first,
    so ``request.auth`` is the API key's prefix). A view that creates payments
    says how many with ``payments_requested(request)``."""

    def allow_request(self, request, view) -> bool:
        active = limiter()
        merchant = getattr(request.user, "merchant", None)
        if active is None or merchant is None or not request.auth:
            return True
        count = getattr(view, "payments_requested", None)
        payments = count(request) if count is not None else 0
        buckets = buckets_for(merchant, request.auth, payments)
        # The key's bucket counts requests; the merchant's quotas, payments.
        costs = [1] + [payments] * (len(buckets) - 1)
        try:
            decision = active.take(buckets, costs)
        except Unavailable as exc:
            return self._unavailable(exc)
        request._request.surge_rate_limit = policy_headers(decision)
        if decision.allowed:
            return True
        metrics.rate_limited(merchant.pk, decision.binding.name)
        if decision.retry_after is None:
            raise InvalidRequest(
                f"This request's {payments} payments exceed the merchant's quota "
                f"of {decision.binding.capacity} per {decision.binding.name}.",
                param="payments",
                code=ErrorCode.QUOTA_EXCEEDED,
            )
        raise Throttled(wait=max(decision.retry_after, 1))

    @staticmethod
    def _unavailable(exc: Unavailable) -> bool:
        global _warned_at
        closed = settings.SURGE_RATE_LIMIT_FAIL_CLOSED
        metrics.rate_limiter_unavailable("refused" if closed else "allowed")
        now = time.monotonic()
        if now - _warned_at > 10:  # a line per 10 s, not one per request
            _warned_at = now
            logger.warning(
                "rate limiter unavailable (%s); failing %s",
                exc,
                "closed" if closed else "open",
            )
        if closed:
            raise LimiterUnavailable()
        return True


class RateLimitHeadersMiddleware:
    """Copies the throttle's ``RateLimit-Policy``/``RateLimit`` fields onto the
    response, whatever the view answered (a 429 and a 400 included)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        fields = getattr(request, "surge_rate_limit", None)
        if fields:
            for name, value in fields.items():
                response[name] = value
        return response
