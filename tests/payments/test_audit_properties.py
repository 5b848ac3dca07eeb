"""Property: whatever order intake, stage runs, crashes, retries, lost or
repeated messages and refunds come in, the events always tell the same story
as the payments and refunds tables (``audit_events`` is clean after every
step).

The broker is real (Redis): the relay, the sweeper and every stage's hand-off
put real task messages on it, and the test plays the worker, taking a
message, running its task's body in-process (sandbox gateway), and sometimes
dying: before its transaction commits (everything rolled back), right after
the gateway answered (the payment stays ``processing`` until an inquiry), or
between its commit and its hand-off (the next stage's message never sent).
Messages are also lost or delivered twice. Only the sweeper and the relay
bring the work back, as in production.
"""

import base64
import json
import random
import uuid
from contextlib import contextmanager, suppress
from datetime import timedelta

import pytest
import redis
from celery import current_app
from django.conf import settings as django_settings
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import payments.tasks  # noqa: F401 (registers the tasks run_task looks up)
from core.errors import InvalidRequest
from gateways import services as gateway_services
from payments.models import Payment, Refund
from payments.services import pipeline, refunds
from payments.services.audit import audit_events
from payments.services.relay import relay_once
from payments.services.sweeper import sweep
from payments.workflow import PAYMENT_STEPS, STAGE_QUEUES
from tests.factories import card_token
from tests.gateways.conftest import _clear_breaker_keys

pytestmark = pytest.mark.django_db

CARDS = ("4242424242424242", "4000000000000002", "4000000000000119")


class WorkerKilled(BaseException):
    """The worker process died here (not an error any code may catch)."""


def _die(*args, **kwargs):
    raise WorkerKilled


# Where a worker can die, besides before its commit: the stage's function
# that runs at that point raises instead.
CRASH_AT = {"before_handoff": "hand_on", "after_gateway": "record_outcomes"}


@contextmanager
def worker(mode: str, monkeypatch):
    """Run a task body as a worker that dies at ``mode``: its own transaction
    (a savepoint here) is rolled back if it dies inside one; what it
    committed before it died stays."""
    with monkeypatch.context() as patch:
        if mode in CRASH_AT:
            patch.setattr(pipeline, CRASH_AT[mode], _die)
        with transaction.atomic():
            try:
                yield
                if mode == "before_commit":
                    raise WorkerKilled
            except WorkerKilled:
                if mode == "before_commit":
                    transaction.set_rollback(True)


@pytest.fixture
def broker():
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def sandbox(settings):
    settings.GATEWAY_RETRY_BASE_MS = 1
    settings.GATEWAY_RETRY_CAP_MS = 2
    settings.GATEWAY_BREAKER_FAIL_MAX = 10_000  # a property, not a breaker drill
    gateway_services.reset()
    _clear_breaker_keys()
    yield
    gateway_services.reset()
    _clear_breaker_keys()


def take(client, rng: random.Random, *, keep: bool = False):
    """A task message from a random non-empty stage queue: (task, args)."""
    queues = [q for q in STAGE_QUEUES if client.llen(q)]
    if not queues:
        return None
    queue = rng.choice(queues)
    raw = client.lindex(queue, -1) if keep else client.rpop(queue)
    message = json.loads(raw)
    args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    return message["headers"]["task"], args


def run_task(name: str, args: list) -> None:
    """The task's body, as the worker that took its message runs it."""
    current_app.tasks[name](*args)


step = st.one_of(
    st.tuples(st.just("accept"), st.sampled_from(CARDS), st.integers(1, 50_000)),
    st.tuples(st.just("relay")),
    st.tuples(st.just("sweep")),
    st.tuples(
        st.just("deliver"),
        st.sampled_from(
            ["ok", "ok", "before_commit", "before_handoff", "after_gateway"]
        ),
    ),
    st.tuples(st.just("lose")),  # a message lost (broker restart, crash)
    st.tuples(st.just("duplicate")),  # delivered again (acks_late redelivery)
    st.tuples(
        st.just("stage"),
        st.sampled_from(sorted(PAYMENT_STEPS)),
        st.sampled_from(["ok", "before_commit", "before_handoff", "after_gateway"]),
    ),
    st.tuples(st.just("refund"), st.integers(1, 100)),
)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(step, min_size=4, max_size=22), seed=st.integers(0, 2**32))
def test_any_history_of_crashes_retries_and_refunds_audits_clean(
    steps, seed, api, merchant, broker, sandbox, monkeypatch
):
    rng = random.Random(seed)
    broker.flushdb()
    tokens = {}
    with transaction.atomic():
        mine: list[str] = []
        for action, *arg in steps:
            if action == "accept":
                number, amount = arg
                if number not in tokens:
                    tokens[number] = card_token(merchant, number)
                resp = api.post(
                    "/v1/payments",
                    data={
                        "amount": amount,
                        "currency": "usd",
                        "source": tokens[number].id,
                    },
                    format="json",
                    HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
                )
                assert resp.status_code == 202, resp.content
                mine.append(resp.json()["id"])
            elif action == "relay":
                relay_once()
            elif action == "sweep":
                sweep(older_than=timedelta(0))
            elif action in ("deliver", "duplicate"):
                message = take(broker, rng, keep=action == "duplicate")
                if message:
                    with worker(arg[0] if arg else "ok", monkeypatch):
                        run_task(*message)
            elif action == "lose":
                take(broker, rng)
            elif action == "stage":  # a worker given the sweeper's ids
                status, mode = arg
                ids = list(
                    Payment.objects.filter(pk__in=mine, status=status).values_list(
                        "pk", flat=True
                    )
                )
                if ids:
                    subset = rng.sample(ids, rng.randint(1, len(ids)))
                    with worker(mode, monkeypatch):
                        run_task(PAYMENT_STEPS[status].task, [subset])
            elif action == "refund":
                settled = list(Payment.objects.filter(pk__in=mine, status="settled"))
                if settled:
                    payment = rng.choice(settled)
                    left = payment.amount - payment.amount_refunded
                    with suppress(InvalidRequest), transaction.atomic():
                        refunds.refund_create(  # refused if nothing is left
                            merchant=merchant,
                            payment_id=payment.pk,
                            amount=max(1, left * arg[0] // 100),
                        )
            report = audit_events()
            assert report.ok, "\n".join(str(d) for d in report.examples)
        # And the audit keeps holding while everything is driven home.
        for _ in range(12):
            relay_once()
            sweep(older_than=timedelta(0))
            while message := take(broker, rng):
                with worker("ok", monkeypatch):
                    run_task(*message)
        pending = Refund.objects.filter(payment_id__in=mine, status="pending")
        assert not pending.exists() or all(r.outcome_unknown for r in pending)
        report = audit_events()
        assert report.ok, "\n".join(str(d) for d in report.examples)
        assert report.payments == len(mine)
        transaction.set_rollback(True)
