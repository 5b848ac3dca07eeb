"""Circuit breakers (state in Redis, shared by every process) and bulkheads.

Breakers are module-level, one per gateway. pybreaker's ``CircuitBreaker.call``
holds a process-wide lock for the whole call, which would serialize every
charge to a gateway; the state lives in Redis, so ``SharedBreaker`` skips it.

With REDIS_URL unset (``make run``'s default: Redis is not needed there) or
Redis unreachable, each process keeps its own breaker state: a breaker opens
after ``fail_max`` failures seen by that process, not by the whole stack.
"""

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TypeVar

import pybreaker
import redis
from django.conf import settings

from gateways import conf
from gateways.exceptions import (
    BulkheadFull,
    CircuitOpen,
    RequestRejected,
    RetryableSafe,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")

_lock = threading.Lock()
_breakers: dict[str, pybreaker.CircuitBreaker] = {}
_bulkheads: dict[str, threading.BoundedSemaphore] = {}
_redis: redis.Redis | None = None


class SharedBreaker(pybreaker.CircuitBreaker):
    def call(self, func: Callable[..., T], *args, **kwargs) -> T:
        return self.state.call(func, *args, **kwargs)


class _LogStateChange(pybreaker.CircuitBreakerListener):
    def state_change(self, cb, old_state, new_state) -> None:
        old = old_state.name if old_state else "-"
        logger.warning("breaker %s: %s -> %s", cb.name, old, new_state.name)


def _answered(exc: BaseException) -> bool:
    """A processing_error is the gateway answering about one card, not an outage."""
    return isinstance(exc, RetryableSafe) and exc.code == "processing_error"


def namespace(gateway_name: str) -> str:
    """Redis keys are ``<namespace>:pybreaker:{state,fail_counter,opened_at,...}``."""
    return f"surge:gateway:{gateway_name}"


def redis_client() -> redis.Redis | None:
    global _redis
    url = getattr(settings, "REDIS_URL", None)
    if not url:
        return None
    if _redis is None:
        # Short timeouts: a slow Redis must not stall payments (pybreaker then
        # falls back to "closed").
        _redis = redis.Redis.from_url(
            url, socket_timeout=0.5, socket_connect_timeout=0.5
        )
    return _redis


class PreciseRedisStorage(pybreaker.CircuitRedisStorage):
    """pybreaker's Redis storage, made precise and cheap on the happy path.

    - ``opened_at`` keeps sub-second precision (pybreaker keeps whole seconds,
      so a 1 s reset timeout could end at once).
    - pybreaker reads ``state`` and resets the failure counter in Redis on every
      call: two round trips per charge. Here the state is cached in-process for
      ``STATE_TTL`` seconds (a trip elsewhere is seen within that), and a
      success resets the shared counter at most every ``STATE_TTL`` unless this
      process counted a failure since. So the breaker opens after ``fail_max``
      failures with no success reset in between, across processes, as before,
      to within that window.
    """

    STATE_TTL = 0.25

    def __init__(self, *args, **kwargs):
        self._cached_state: str | None = None
        self._state_read_at = 0.0
        self._reset_at = 0.0
        self._failed_since_reset = False
        super().__init__(*args, **kwargs)

    @property
    def state(self) -> str:
        now = time.monotonic()
        if self._cached_state is None or now - self._state_read_at > self.STATE_TTL:
            self._cached_state = pybreaker.CircuitRedisStorage.state.fget(self)
            self._state_read_at = now
        return self._cached_state

    @state.setter
    def state(self, state: str) -> None:
        pybreaker.CircuitRedisStorage.state.fset(self, state)
        self._cached_state = str(state)
        self._state_read_at = time.monotonic()

    def increment_counter(self) -> None:
        self._failed_since_reset = True
        super().increment_counter()

    def reset_counter(self) -> None:
        now = time.monotonic()
        if not self._failed_since_reset and now - self._reset_at < self.STATE_TTL:
            return
        self._failed_since_reset = False
        self._reset_at = now
        super().reset_counter()

    @property
    def opened_at(self) -> datetime | None:
        try:
            value = self._redis.get(self._namespace("opened_at"))
        except redis.RedisError:
            logger.warning("breaker storage: Redis error reading opened_at")
            return None
        return datetime.fromtimestamp(float(value), UTC) if value else None

    @opened_at.setter
    def opened_at(self, now: datetime) -> None:
        try:
            self._redis.set(self._namespace("opened_at"), repr(now.timestamp()))
        except redis.RedisError:
            logger.warning("breaker storage: Redis error writing opened_at")


def _storage(name: str) -> pybreaker.CircuitBreakerStorage:
    client = redis_client()
    if client is not None:
        try:
            return PreciseRedisStorage(
                pybreaker.STATE_CLOSED, client, namespace=namespace(name)
            )
        except redis.RedisError as exc:
            logger.warning(
                "breaker %s: Redis unavailable (%s); state is per-process",
                name,
                type(exc).__name__,
            )
    return pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)


def breaker(name: str) -> pybreaker.CircuitBreaker:
    cb = _breakers.get(name)
    if cb is not None:
        return cb
    with _lock:
        if name not in _breakers:
            _breakers[name] = SharedBreaker(
                fail_max=conf.get("GATEWAY_BREAKER_FAIL_MAX"),
                reset_timeout=conf.get("GATEWAY_BREAKER_RESET_SECONDS"),
                success_threshold=conf.get("GATEWAY_BREAKER_SUCCESS_THRESHOLD"),
                # The caller's own bad request or a full local bulkhead says
                # nothing about the gateway's health.
                exclude=[RequestRejected, BulkheadFull, _answered],
                listeners=[_LogStateChange()],
                state_storage=_storage(name),
                name=name,
                # Re-raise the original error: turning an UnknownOutcome into a
                # "circuit open" would invite a charge elsewhere.
                throw_new_error_on_trip=False,
            )
        return _breakers[name]


def breaker_state(name: str) -> str:
    """ "closed", "open" or "half-open", as stored (shared across processes)."""
    return breaker(name).current_state


def guarded(name: str, func: Callable[[], T]) -> T:
    """Call ``func`` through the gateway's breaker; an open circuit sends nothing."""
    try:
        return breaker(name).call(func)
    except pybreaker.CircuitBreakerError as exc:
        raise CircuitOpen(f"{name}: circuit open") from exc


@contextlib.contextmanager
def bulkhead(name: str) -> Iterator[None]:
    """At most GATEWAY_BULKHEAD_SIZE concurrent calls per gateway per process."""
    sem = _bulkheads.get(name)
    if sem is None:
        with _lock:
            sem = _bulkheads.setdefault(
                name, threading.BoundedSemaphore(conf.get("GATEWAY_BULKHEAD_SIZE"))
            )
    if not sem.acquire(timeout=conf.get("GATEWAY_BULKHEAD_WAIT_SECONDS")):
        raise BulkheadFull(f"{name}: bulkhead full")
    try:
        yield
    finally:
        sem.release()


def reset() -> None:
    """Forget breakers, bulkheads and the Redis client (tests; after fork)."""
    global _redis
    with _lock:
        _breakers.clear()
        _bulkheads.clear()
        _redis = None
