"""Token buckets in Redis, checked and taken together in one atomic script.

A request may be subject to several limits at once (its API key's rate, its
merchant's payments a minute and an hour). The script refills every bucket
from Redis's own clock, and takes each bucket's cost from all of them or from
none: a request refused by the hour's quota leaves the minute's untouched. A
batch of 1,000 payments costs its key's bucket one request and its merchant's
quotas 1,000 payments.
One round trip whatever the number of limits, atomic across processes and
hosts (Redis runs a script alone), so N concurrent requests against M tokens
get exactly M through.

A bucket of ``capacity`` tokens refilled at ``rate`` a second allows a burst
of ``capacity`` and ``rate`` a second after it. Why not the ``limits``
library: its strategies are windows (no burst on top of a rate), and each
limit is its own round trip and its own decision, so a request refused by
one limit would still have spent another's.
"""

import hashlib
import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis

logger = logging.getLogger(__name__)

# KEYS: one hash per bucket. ARGV: (rate a second, capacity, cost) per key,
# then the lease wanted (extra requests of the same costs, 0 for none). One
# string comes back, "allowed wait binding leased left1 left2 ...": wait is
# the ms until the binding bucket allows (-1 when the cost exceeds a
# capacity: no wait would ever do), leased the extra requests granted and
# already taken from every bucket, left the tokens then left in each.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = #KEYS
local want = tonumber(ARGV[3 * n + 1])
local left, wait, binding = {}, 0, 1
local tightest = 2
for i = 1, n do
  local rate = tonumber(ARGV[3 * i - 2])
  local cap = tonumber(ARGV[3 * i - 1])
  local cost = tonumber(ARGV[3 * i])
  local state = redis.call('HMGET', KEYS[i], 't', 'ts')
  local tokens = tonumber(state[1]) or cap
  local ts = tonumber(state[2]) or now
  tokens = math.min(cap, tokens + math.max(0, now - ts) * rate / 1000)
  left[i] = tokens
  if cost > cap then
    wait, binding = -1, i
  elseif wait >= 0 and tokens < cost then
    local w = math.ceil((cost - tokens) * 1000 / rate)
    if w > wait then wait, binding = w, i end
  end
  if wait == 0 and (tokens - cost) / cap < tightest then
    tightest, binding = (tokens - cost) / cap, i
  end
  -- A lease only from the half of a bucket above its middle: near its limit
  -- every request is decided here, one at a time.
  if want > 0 and cost > 0 then
    want = math.min(want, math.floor((tokens - cost - cap / 2) / cost))
  end
end
if wait ~= 0 then
  local out = {0, wait, binding, 0}
  for i = 1, n do out[#out + 1] = math.floor(left[i]) end
  return table.concat(out, ' ')
end
if want < 0 then want = 0 end
local out = {1, 0, binding, want}
for i = 1, n do
  local rate = tonumber(ARGV[3 * i - 2])
  local cap = tonumber(ARGV[3 * i - 1])
  local tokens = left[i] - tonumber(ARGV[3 * i]) * (1 + want)
  redis.call('HSET', KEYS[i], 't', tostring(tokens), 'ts', tostring(now))
  redis.call('PEXPIRE', KEYS[i], math.ceil(cap * 1000 / rate) + 1000)
  out[#out + 1] = math.floor(tokens)
end
return table.concat(out, ' ')
"""


@dataclass(frozen=True, slots=True)
class Bucket:
    key: str  # the Redis key (a prefix is added)
    name: str  # what the limit is, for headers and metrics ("key", "minute", ...)
    rate: float  # tokens a second
    capacity: int  # the burst: tokens when full

    @property
    def window(self) -> int:
        """Seconds an empty bucket takes to fill: the policy's window."""
        return max(1, math.ceil(self.capacity / self.rate))


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after: int | None  # whole seconds; None: the cost exceeds a bucket
    binding: Bucket  # the bucket that refused, or the tightest one after taking
    remaining: int  # tokens left in ``binding``

    @property
    def reset(self) -> int:
        """Seconds until ``binding`` is full again."""
        missing = self.binding.capacity - self.remaining
        return max(0, math.ceil(missing / self.binding.rate))


class Unavailable(Exception):
    """Redis did not answer: the caller decides to fail open or closed."""


def _pack(*parts: bytes) -> bytes:
    """One command in RESP, Redis's wire format."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


@dataclass(slots=True)
class _Lease:
    """Requests of one set of buckets (one token from each) that Redis has
    already granted this process, to be spent here until ``expires``."""

    left: int
    expires: float
    remaining: list[int]  # each bucket's tokens in Redis after the grant


class Limiter:
    """Checks and takes from several buckets at once (see the module docs).

    Each thread keeps one connection from redis-py's pool and sends the
    script's EVALSHA on it directly: redis-py's client-level call (pool
    checkout, retries, instrumentation) cost several times the round trip's
    own CPU (docs/performance.md). After a Redis failure it does not ask
    again for ``backoff`` seconds: a dead Redis costs each request nothing,
    not a timeout each.

    Leases: where every bucket of a request holds at least ``lease_min``
    tokens (a limit far above one request), the script may grant up to
    ``lease`` more requests of the same kind at once, taken from Redis then
    and spent by this process, without a round trip, for ``lease_seconds``.
    Only the half of a bucket above its middle is ever leased, so a limit is
    decided request by request as it nears its end; nothing is ever granted
    twice, so a limit is never exceeded; a lease left unspent when it expires
    makes the limit stricter by at most ``lease`` requests a process.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "surge:rl:",
        timeout: float = 0.1,
        backoff: float = 1.0,
        lease: int = 16,
        lease_min: int = 200,
        lease_seconds: float = 1.0,
    ):
        self.prefix = prefix
        self.backoff = backoff
        self.lease, self.lease_min, self.lease_seconds = lease, lease_min, lease_seconds
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        # Redis names a script by its SHA-1 (EVALSHA); not a security use.
        self._sha = hashlib.sha1(_SCRIPT.encode(), usedforsecurity=False).hexdigest()
        self._sha = self._sha.encode()
        self._local = threading.local()
        self._down_until = 0.0
        self._leases: dict[tuple, _Lease] = {}
        self._lock = threading.Lock()

    def take(
        self, buckets: Sequence[Bucket], costs: Sequence[int] | None = None
    ) -> Decision:
        """Take ``costs[i]`` tokens from ``buckets[i]`` (one each by default),
        from all of them or, if any is short, from none."""
        if costs is None:
            costs = [1] * len(buckets)
        elif len(costs) != len(buckets):
            raise ValueError("one cost per bucket")
        leasable = self.lease > 0 and all(
            c == 1 and b.capacity >= self.lease_min
            for b, c in zip(buckets, costs, strict=True)
        )
        if leasable:
            decision = self._from_lease(buckets)
            if decision is not None:
                return decision
        if time.monotonic() < self._down_until:
            raise Unavailable("rate limiter backing off after a Redis failure")
        args = []
        for bucket, cost in zip(buckets, costs, strict=True):
            args += [
                repr(float(bucket.rate)).encode(),
                str(bucket.capacity).encode(),
                str(int(cost)).encode(),
            ]
        args.append(str(self.lease if leasable else 0).encode())
        keys = [(self.prefix + b.key).encode() for b in buckets]
        command = _pack(b"EVALSHA", self._sha, str(len(keys)).encode(), *keys, *args)
        try:
            reply = self._call(command)
            allowed, wait, binding, leased, *left = map(int, reply.split())
        except redis.RedisError as exc:
            self._drop_connection()
            self._down_until = time.monotonic() + self.backoff
            raise Unavailable(str(exc)) from exc
        if leased:
            now = time.monotonic()
            key = tuple(b.key for b in buckets)
            with self._lock:
                held = self._leases.get(key)
                if held is not None and held.left > 0 and now < held.expires:
                    # Another thread's lease arrived first: keep both.
                    held.left += leased
                    held.expires = now + self.lease_seconds
                    held.remaining = left
                else:
                    self._leases[key] = _Lease(leased, now + self.lease_seconds, left)
        bucket = buckets[binding - 1]
        return Decision(
            allowed=bool(allowed),
            retry_after=None if wait < 0 else math.ceil(wait / 1000),
            binding=bucket,
            # What this caller may still take: the lease it holds counts.
            remaining=max(0, left[binding - 1] + leased * costs[binding - 1]),
        )

    def _from_lease(self, buckets: Sequence[Bucket]) -> Decision | None:
        """One request from this process's lease on these buckets, if it holds one."""
        key = tuple(b.key for b in buckets)
        with self._lock:
            lease = self._leases.get(key)
            if lease is None:
                return None
            if lease.left <= 0 or time.monotonic() >= lease.expires:
                del self._leases[key]
                return None
            lease.left -= 1
            left = lease.left
            remaining = lease.remaining
        # The tightest bucket after this request, as the script would say.
        i = min(
            range(len(buckets)),
            key=lambda j: (remaining[j] + left) / buckets[j].capacity,
        )
        return Decision(True, 0, buckets[i], max(0, remaining[i] + left))

    def _call(self, command: bytes) -> bytes:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._client.connection_pool.get_connection()
        conn.send_packed_command([command])
        try:
            return conn.read_response()
        except redis.exceptions.NoScriptError:
            # A restarted (or flushed) Redis forgot the script: load it once.
            self._client.script_load(_SCRIPT)
            conn.send_packed_command([command])
            return conn.read_response()

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.disconnect()

    def reset(self, buckets: Sequence[Bucket]) -> None:
        """Forget the buckets' state (tests, an operator raising a limit now)."""
        with self._lock:
            self._leases.clear()
        self._client.delete(*[self.prefix + b.key for b in buckets])


def policy_headers(decision: Decision) -> dict[str, str]:
    """The IETF draft's ``RateLimit-Policy`` and ``RateLimit`` fields (structured
    fields) for the limit that binds: quota and window, what is left and when
    it is whole again."""
    bucket = decision.binding
    return {
        "RateLimit-Policy": f'"{bucket.name}";q={bucket.capacity};w={bucket.window}',
        "RateLimit": f'"{bucket.name}";r={decision.remaining};t={decision.reset}',
    }
