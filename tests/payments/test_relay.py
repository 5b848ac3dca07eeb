"""The relay against real PostgreSQL and Redis: what lands on the broker."""

import base64
import json
import threading

import pytest
import redis
from django.conf import settings
from django.db import connections

from payments.models import Event, Payment
from payments.services.relay import relay_once, run_relay
from tests.factories import TokenFactory
from tests.stack import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def broker():
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()


def published_ids(client, queue):
    """Payment ids in every task message waiting on ``queue``."""
    ids = []
    for raw in client.lrange(queue, 0, -1):
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        ids.extend(args[0])
    return ids


def created_payments(merchant, n):
    token = TokenFactory(merchant_id=merchant.id)
    payments = []
    for _ in range(n):
        p = Payment.objects.create(
            merchant=merchant, amount=100, currency="usd", source=token
        )
        Event.objects.create(type="payment.created", merchant_id=merchant.id, payment=p)
        payments.append(p.pk)
    return payments


def test_relay_publishes_each_created_payment_to_validate_and_marks_it(
    merchant, broker
):
    ids = created_payments(merchant, 30)
    assert relay_once(batch_size=1000) == 30
    assert sorted(published_ids(broker, "validate")) == sorted(ids)
    assert not Event.objects.filter(published_at__isnull=True).exists()
    assert relay_once(batch_size=1000) == 0  # nothing twice


def test_two_relays_at_once_publish_every_event_exactly_once(merchant, broker):
    ids = created_payments(merchant, 200)
    barrier = threading.Barrier(2)

    def relay():
        try:
            barrier.wait()
            while relay_once(batch_size=7):
                pass
        finally:
            connections.close_all()

    threads = [threading.Thread(target=relay) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    published = published_ids(broker, "validate")
    assert sorted(published) == sorted(ids)  # all of them, none twice
    assert not Event.objects.filter(published_at__isnull=True).exists()


def _unpublished(n: int) -> None:
    from payments.services.events import events_insert

    events_insert("payment.created", [("mer_x", f"pay_hold{i}", {}) for i in range(n)])


def _timed_hold(**kwargs) -> float:
    import time

    from payments.services.relay import _hold_while_busy

    start = time.monotonic()
    _hold_while_busy(threading.Event(), **kwargs)
    return time.monotonic() - start


def test_relay_does_not_hold_a_trickle(settings):
    settings.SURGE_TASK_BATCH_SIZE = 200
    assert _timed_hold(backlog=lambda: 0, hold_seconds=1.0) < 0.05
    slow = {"last_count": 3, "arrival_rate": 30.0}  # a few a cycle: go at once
    assert _timed_hold(backlog=lambda: 0, hold_seconds=1.0, **slow) < 0.05


def test_relay_holds_a_fast_stream_until_a_batch_should_have_gathered(settings):
    import time

    settings.SURGE_TASK_BATCH_SIZE = 200
    fast = {"backlog": lambda: 0, "last_count": 50, "hold_seconds": 1.0}
    # 200 at 500/s: 0.4 s after the claim
    assert 0.35 <= _timed_hold(arrival_rate=500.0, **fast) < 0.6
    # ... of which 0.3 s have passed already
    then = time.monotonic() - 0.3
    assert _timed_hold(arrival_rate=500.0, claimed_at=then, **fast) < 0.2
    # slower than a batch per hold: wait no longer than the limit
    assert 0.95 <= _timed_hold(arrival_rate=100.0, **fast) < 1.3


def test_relay_hold_reads_nothing_from_the_database(
    settings, django_assert_num_queries
):
    settings.SURGE_TASK_BATCH_SIZE = 200
    with django_assert_num_queries(0):
        _timed_hold(
            backlog=lambda: 0, hold_seconds=0.2, last_count=50, arrival_rate=1e4
        )


def test_relay_holds_while_workers_have_a_backlog(settings):
    settings.SURGE_TASK_BATCH_SIZE = 200
    _unpublished(1)
    assert 0.25 <= _timed_hold(backlog=lambda: 5, hold_seconds=0.3) < 0.8
    assert _timed_hold(backlog=None, hold_seconds=0.0) < 0.05


def test_stage_backlog_reads_the_broker_and_reuses_a_fresh_reading(broker):
    import time

    from payments.services.handoff import publish
    from payments.services.relay import StageBacklog

    backlog = StageBacklog(max_age=0.3)
    try:
        assert backlog() == 0
        publish("validate", ["pay_a", "pay_b"])
        publish("settle", ["pay_c"])
        assert backlog() == 0  # the reading from a moment ago
        time.sleep(0.35)
        assert backlog() == 2  # one message per task, in two stage queues
        broker.flushdb()
        assert backlog() == 2
        time.sleep(0.35)
        assert backlog() == 0
    finally:
        backlog.close()


def _listening_backends() -> int:
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND query LIKE 'LISTEN%%' AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_the_relay_outlives_its_database_connections_dropping(merchant, broker):
    """What a PostgreSQL restart does to a relay (found by `make drill`): its
    LISTEN connection breaks under it. It must go on relaying, and listen
    again, not exit."""
    stop = threading.Event()
    crashed: list[BaseException] = []

    def relay():
        try:
            run_relay(stop=stop, poll_seconds=0.2, linger_seconds=0)
        except BaseException as exc:  # what ended the relay, for the assert
            crashed.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=relay, daemon=True)
    thread.start()
    try:
        wait_until(_listening_backends, timeout=10)
        with connections["default"].cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ids = created_payments(merchant, 5)
        wait_until(
            lambda: sorted(published_ids(broker, "validate")) == sorted(ids),
            timeout=15,
        )
        assert thread.is_alive(), crashed
        wait_until(_listening_backends, timeout=10)  # listening again
    finally:
        stop.set()
        thread.join(10)
    assert not crashed
