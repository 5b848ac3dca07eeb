"""Thin Celery tasks: take ids, call a service. Every task here is idempotent,
which is what makes ``acks_late`` and redelivery on worker loss safe.

The stage tasks take their names and queues from the workflow table
(``payments.workflow``), which is also what the relay, the sweeper and the
stages' hand-offs send by.
"""

from celery import shared_task, signals
from django.db import InterfaceError, OperationalError

from core import logs
from payments.services import (
    idempotency,
    partitions,
    pipeline,
    refunds,
    risk,
    sweeper,
    webhooks,
)
from payments.services.enrich import enrich_batch
from payments.workflow import STEPS

# Transient database errors are retried with backoff and jitter; anything that
# is still failing is left to the sweeper, which re-drives by payment state.
_RETRY = {
    "acks_late": True,
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": 1,
    "retry_backoff_max": 30,
    "retry_jitter": True,
    "max_retries": 5,
}


logger = logs.get_logger(__name__)


@signals.task_prerun.connect
def _log_context(task_id=None, task=None, **kwargs) -> None:
    """Every log line of a task names it (a task's context never leaks into
    the next one run by the same process or thread)."""
    logs.clear()
    logs.bind(task=task.name if task else None, task_id=task_id)


def _done(stage: str, ids: list[str], counts, *, kind: str = "payment_ids"):
    """One line a batch: a grep for a payment id finds every stage it went
    through."""
    logger.info("stage.done", stage=stage, result=counts, **{kind: ids})
    return counts


def _stage(name: str) -> dict:
    step = STEPS[name]
    return {"name": step.task, "queue": step.queue, **_RETRY}


@shared_task(**_stage("validate"))
def validate(payment_ids: list[str]) -> dict:
    return _done("validate", payment_ids, pipeline.validate_batch(payment_ids))


@shared_task(**_stage("enrich"))
def enrich(payment_ids: list[str]) -> dict:
    return _done("enrich", payment_ids, enrich_batch(payment_ids))


@shared_task(**_stage("execute"))
def execute(payment_ids: list[str]) -> dict:
    return _done("execute", payment_ids, pipeline.execute_batch(payment_ids))


@shared_task(**_stage("resolve"))
def resolve(payment_ids: list[str]) -> dict:
    return _done("resolve", payment_ids, pipeline.resolve_processing(payment_ids))


@shared_task(**_stage("settle"))
def settle(payment_ids: list[str]) -> int:
    return _done("settle", payment_ids, pipeline.settle_batch(payment_ids))


@shared_task(**_stage("refund"))
def refund(refund_ids: list[str]) -> dict:
    result = refunds.refund_execute_batch(refund_ids)
    return _done("refund", refund_ids, result, kind="refund_ids")


@shared_task(name="payments.sweep", queue="default", acks_late=True)
def sweep() -> dict:
    return sweeper.sweep()


@shared_task(name="payments.purge_idempotency_keys", queue="default", acks_late=True)
def purge_idempotency_keys() -> int:
    return idempotency.purge_expired()


@shared_task(name="payments.purge_velocity_entries", queue="default", acks_late=True)
def purge_velocity_entries() -> int:
    return risk.risk_velocity_purge()


@shared_task(name="payments.ensure_partitions", queue="default", acks_late=True)
def ensure_partitions() -> list[str]:
    """Beat, daily: the events' and deliveries' partitions months ahead."""
    return partitions.partitions_ensure().created


@shared_task(name="payments.deliver_webhooks", queue="default", acks_late=True)
def deliver_webhooks() -> dict:
    """Beat, every second: dispatch new events, post due deliveries. Overlapping
    runs share the work (SKIP LOCKED), so a slow run never blocks the next."""
    return webhooks.run_once()


# Every stage of the workflow has its task here (checked at import).
_missing = {s.task for s in STEPS.values()} - {
    t.name for t in (validate, enrich, execute, resolve, settle, refund)
}
if _missing:
    raise AssertionError(f"workflow steps without a task: {sorted(_missing)}")
