"""The outbox relay: unpublished events -> Celery tasks, at least once.

Events are claimed with ``FOR UPDATE SKIP LOCKED`` so several relays share the
work; tasks are published before the claim commits, so a crash re-publishes
(harmless: every stage is idempotent) and never loses one.
"""

import json
import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence

import psycopg
from celery import current_app
from django.conf import settings
from django.db import connection, transaction
from kombu.exceptions import ChannelError

from core import logs
from core.tracing import is_on as tracing_is_on
from core.tracing import span_linked_to
from payments import sql
from payments.services.handoff import send
from payments.sql import NOTIFY_CHANNEL
from payments.workflow import (
    REFUND_CREATED,
    REFUND_STEPS,
    STAGE_QUEUES,
    STEP_FOR_EVENT,
    Step,
)

logger = logging.getLogger(__name__)
events_log = logs.get_logger(__name__)


def relay_once(*, batch_size: int = 2000) -> int:
    """Publish one batch of unpublished events; return how many were claimed.

    In the normal flow only what a request accepted (``payment.created``,
    ``refund.created``) reaches the relay: the stages hand on to the next stage
    themselves after commit and write their events already published. The
    other events matter when ``replay`` marks them unpublished again.
    """
    with transaction.atomic():
        rows = sql.claim_events(batch_size)
        if not rows:
            return 0
        by_step: dict[Step, list[str]] = defaultdict(list)
        traces: dict[Step, list[str | None]] = defaultdict(list)
        tracing = tracing_is_on()  # else no event's data need be read
        for _, event_type, payment_id, data in rows:
            step = STEP_FOR_EVENT.get(event_type)
            if step is None:
                continue
            if isinstance(data, str) and (tracing or event_type == REFUND_CREATED):
                data = json.loads(data)
            if event_type == REFUND_CREATED:
                by_step[step].append(data["refund"])
            elif payment_id:
                by_step[step].append(payment_id)
            if tracing:
                traces[step].append((data or {}).get("traceparent"))
        for step, ids in by_step.items():
            # The stages' spans are this span's children; it links to the
            # requests that accepted the work (none when not tracing).
            with span_linked_to(f"relay.publish {step.stage}", traces[step]):
                send(step, ids)  # before commit: a crash re-publishes
            kind = "refund_ids" if step in REFUND_STEPS.values() else "payment_ids"
            events_log.info("relay.published", stage=step.stage, **{kind: ids})
    return len(rows)


def _listener():
    """A dedicated autocommit connection LISTENing on the outbox channel."""
    params = connection.get_connection_params()
    keep = ("dbname", "user", "password", "host", "port", "sslmode")
    conn = psycopg.connect(
        autocommit=True, **{k: params[k] for k in keep if params.get(k)}
    )
    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
    return conn


class StageBacklog:
    """Messages waiting (not yet taken by a worker) in the stage queues.

    A waiting message means every worker process is busy: publishing another
    small batch then only adds per-task cost (a message, a transaction and its
    commit per stage), so the relay holds and lets events gather into bigger
    batches. One broker connection, reopened after an error; an unreadable
    broker counts as no backlog (never hold on a guess).

    A reading is reused for ``max_age`` seconds: the relay asks on every cycle,
    up to a hundred times a second under steady load, and three broker round
    trips each time cost CPU for an answer that changes far more slowly.
    """

    def __init__(self, queues: Sequence[str] = STAGE_QUEUES, max_age: float = 0.1):
        self.queues = queues
        self.max_age = max_age
        self._conn = None
        self._value = 0
        self._read_at = -math.inf

    def __call__(self) -> int:
        now = time.monotonic()
        if now - self._read_at >= self.max_age:
            self._value = self._read()
            self._read_at = now
        return self._value

    def _read(self) -> int:
        total = 0
        try:
            if self._conn is None:
                self._conn = current_app.connection_for_read()
            channel = self._conn.default_channel
            for queue in self.queues:
                try:
                    total += channel.queue_declare(queue=queue, passive=True)[1]
                except ChannelError:  # never declared: no worker, nothing waiting
                    continue
        except Exception:
            logger.debug("stage backlog unavailable", exc_info=True)
            self.close()
            return 0
        return total

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.release()
            except Exception:
                logger.debug("closing the broker connection failed", exc_info=True)
            self._conn = None


def run_relay(
    *,
    stop: threading.Event,
    poll_seconds: float = 1.0,
    batch_size: int = 2000,
    linger_seconds: float = 0.05,
    hold_seconds: float = 0.0,
    backlog: Callable[[], int] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> None:
    """Relay until ``stop`` is set: drain, then sleep until NOTIFY or the poll.

    After a wake-up it lingers ``linger_seconds`` so that a stream of single
    payments (one NOTIFY each) leaves in batches of tens to hundreds, not as
    one tiny task per payment per stage; the stages keep those batches. Under
    load (``backlog()`` says stage messages wait for a worker, or payments
    arrive by the hundred a second) it holds a while longer, at most
    ``hold_seconds``, so batches grow to a full task and the pipeline's cost
    per payment falls towards the payroll batches'; light load is not held.
    """
    listener = None
    last_claim = time.monotonic()
    try:
        while not stop.is_set():
            try:
                count = relay_once(batch_size=batch_size)
            except Exception:
                logger.exception("relay batch failed; retrying")
                connection.close()
                stop.wait(poll_seconds)
                continue
            if on_batch and count:
                on_batch(count)
            # What arrived since the last claim, per second: the stream's rate.
            claimed_at = time.monotonic()
            rate = count / max(claimed_at - last_claim, 1e-3)
            last_claim = claimed_at
            if count >= batch_size:
                continue
            listener = _wait_for_wake(listener, poll_seconds, stop)
            stop.wait(linger_seconds)
            _hold_while_busy(
                stop, backlog, hold_seconds,
                last_count=count, arrival_rate=rate, claimed_at=claimed_at,
            )  # fmt: skip
    finally:
        if listener is not None:
            listener.close()
        if isinstance(backlog, StageBacklog):
            backlog.close()


def _wait_for_wake(
    listener: psycopg.Connection | None, timeout: float, stop: threading.Event
) -> psycopg.Connection | None:
    """Wait for a NOTIFY or ``timeout``; return the listening connection.

    A listening connection that broke (PostgreSQL restarted, the backend
    terminated) is dropped, the relay polls for a while, and the next wait
    listens again: a relay outlives its database's restarts, as the stages do.
    """
    try:
        if listener is None:
            listener = _listener()
        for _ in listener.notifies(timeout=timeout, stop_after=1):
            pass
        return listener
    except psycopg.Error as exc:
        logger.warning("relay: cannot listen (%s); polling until it can", exc)
        if listener is not None:
            listener.close()
        stop.wait(timeout)
        return None


# More than this many events gathered during one linger means hundreds of
# payments a second are arriving: worth waiting for a fuller batch.
BUSY_AFTER_LINGER = 20


def _hold_while_busy(
    stop: threading.Event,
    backlog: Callable[[], int] | None,
    hold_seconds: float,
    *,
    last_count: int = 0,
    arrival_rate: float = 0.0,
    claimed_at: float | None = None,
) -> None:
    """Hold (at most ``hold_seconds``) while workers have a backlog, or while
    payments stream in (the last claim, at ``claimed_at``, took ``last_count``,
    arriving at ``arrival_rate`` a second) until a full task batch should have
    gathered since that claim.
    Light load is never held: a trickle of payments leaves after the linger.

    The time to a full batch is estimated from the arrival rate, not counted
    in the outbox: counting on every cycle walks the partial index's dead
    entries, a cost that grows the longer the run."""
    if hold_seconds <= 0:
        return
    start = time.monotonic()
    deadline = start + hold_seconds
    full_at = start
    if last_count >= BUSY_AFTER_LINGER and arrival_rate > 0:
        since = start if claimed_at is None else claimed_at
        full_at = since + settings.SURGE_TASK_BATCH_SIZE / arrival_rate
    while (now := time.monotonic()) < deadline:
        if now >= full_at and (backlog is None or backlog() == 0):
            return
        if stop.wait(0.05):
            return
