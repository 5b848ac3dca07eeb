"""Thin Celery tasks: take ids, call a service. Every task here is idempotent,
which is what makes ``acks_late`` and redelivery on worker loss safe.

The stage tasks take their names and queues from the workflow table
(``payments.workflow``), which is also what the relay, the sweeper and the
stages' hand-offs send by.
"""

from celery import shared_task
from django.db import InterfaceError, OperationalError

from payments.services import idempotency, pipeline, refunds, sweeper, webhooks
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


def _stage(name: str) -> dict:
    step = STEPS[name]
    return {"name": step.task, "queue": step.queue, **_RETRY}


@shared_task(**_stage("validate"))
def validate(payment_ids: list[str]) -> dict:
    return pipeline.validate_batch(payment_ids)


@shared_task(**_stage("execute"))
def execute(payment_ids: list[str]) -> dict:
    return pipeline.execute_batch(payment_ids)


@shared_task(**_stage("resolve"))
def resolve(payment_ids: list[str]) -> dict:
    return pipeline.resolve_processing(payment_ids)


@shared_task(**_stage("settle"))
def settle(payment_ids: list[str]) -> int:
    return pipeline.settle_batch(payment_ids)


@shared_task(**_stage("refund"))
def refund(refund_ids: list[str]) -> dict:
    return refunds.refund_execute_batch(refund_ids)


@shared_task(name="payments.sweep", queue="default", acks_late=True)
def sweep() -> dict:
    return sweeper.sweep()


@shared_task(name="payments.purge_idempotency_keys", queue="default", acks_late=True)
def purge_idempotency_keys() -> int:
    return idempotency.purge_expired()


@shared_task(name="payments.deliver_webhooks", queue="default", acks_late=True)
def deliver_webhooks() -> dict:
    """Beat, every second: dispatch new events, post due deliveries. Overlapping
    runs share the work (SKIP LOCKED), so a slow run never blocks the next."""
    return webhooks.run_once()


# Every stage of the workflow has its task here (checked at import).
_missing = {s.task for s in STEPS.values()} - {
    t.name for t in (validate, execute, resolve, settle, refund)
}
if _missing:
    raise AssertionError(f"workflow steps without a task: {sorted(_missing)}")
