"""core.ratelimit against real Redis: leases spare busy keys a round trip a
request without ever letting more through than the bucket holds."""

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings

from core.ratelimit import Bucket, Limiter


class CountingLimiter(Limiter):
    """The real limiter, counting its trips to Redis."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.trips = 0
        self._count_lock = threading.Lock()

    def _call(self, command):
        with self._count_lock:
            self.trips += 1
        return super()._call(command)


def fresh_bucket(capacity: int) -> Bucket:
    # Refills so slowly that a run of the test sees none.
    return Bucket(f"test:{uuid.uuid4().hex}", "key", 0.001, capacity)


def allowed(limiter: Limiter, buckets, n: int, threads: int = 16) -> int:
    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(lambda _: limiter.take(buckets).allowed, range(n)))


@pytest.fixture
def limiter_factory():
    made = []

    def make(**kwargs) -> CountingLimiter:
        limiter = CountingLimiter(settings.REDIS_URL, **kwargs)
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        limiter._drop_connection()


def test_leases_let_exactly_the_capacity_through_in_fewer_trips(limiter_factory):
    limiter = limiter_factory(lease=16, lease_min=200)
    bucket = fresh_bucket(400)
    assert allowed(limiter, [bucket], 800) == 400
    # Half the bucket went out 17 at a time, the other half one by one (and
    # the refusals after it each asked once).
    assert limiter.trips < 800 - 150


def test_two_processes_leasing_one_bucket_never_exceed_it(limiter_factory):
    first, second = limiter_factory(lease=16), limiter_factory(lease=16)
    bucket = fresh_bucket(300)
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda lim: allowed(lim, [bucket], 400, 8), (first, second))
    assert a + b == 300
    assert a > 0 and b > 0


def test_small_limits_are_decided_one_request_at_a_time(limiter_factory):
    limiter = limiter_factory(lease=16, lease_min=200)
    bucket = fresh_bucket(150)
    assert allowed(limiter, [bucket], 200) == 150
    assert limiter.trips == 200


def test_a_lease_is_spent_only_on_the_buckets_it_came_from(limiter_factory):
    limiter = limiter_factory(lease=16)
    key = fresh_bucket(1000)
    quota = fresh_bucket(1000)
    assert limiter.take([key]).allowed  # leases 16 more of [key] alone
    trips = limiter.trips
    assert limiter.take([key, quota]).allowed  # another set: Redis decides
    assert limiter.trips == trips + 1
    assert limiter.take([key]).allowed  # the lease: no trip
    assert limiter.trips == trips + 1


def test_an_expired_lease_is_not_spent(limiter_factory):
    limiter = limiter_factory(lease=16, lease_seconds=0.0)
    bucket = fresh_bucket(1000)
    for _ in range(5):
        assert limiter.take([bucket]).allowed
    assert limiter.trips == 5


def test_the_fields_count_the_lease_a_process_holds(limiter_factory):
    limiter = limiter_factory(lease=16)
    bucket = fresh_bucket(1000)
    first = limiter.take([bucket])
    second = limiter.take([bucket])  # from the lease
    assert (first.remaining, second.remaining) == (999, 998)
