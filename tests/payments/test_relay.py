"""The relay against real PostgreSQL and Redis: what lands on the broker."""

import base64
import json
import threading

import pytest
import redis
from django.conf import settings
from django.db import connections

from payments.models import Event, Payment
from payments.services.relay import relay_once
from tests.factories import TokenFactory

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
