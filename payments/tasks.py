"""Thin Celery tasks: take ids, call a service. Every task here is idempotent,
which is what makes ``acks_late`` and redelivery on worker loss safe."""

from celery import shared_task
from django.db import InterfaceError, OperationalError

from payments.services import idempotency, pipeline, refunds, sweeper, webhooks

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


@shared_task(name="payments.validate", queue="validate", **_RETRY)
def validate(payment_ids: list[str]) -> dict:
    return pipeline.validate_batch(payment_ids)


@shared_task(name="payments.execute", queue="execute", **_RETRY)
def execute(payment_ids: list[str]) -> dict:
    return pipeline.execute_batch(payment_ids)


@shared_task(name="payments.resolve", queue="execute", **_RETRY)
def resolve(payment_ids: list[str]) -> dict:
    return pipeline.resolve_processing(payment_ids)


@shared_task(name="payments.settle", queue="settle", **_RETRY)
def settle(payment_ids: list[str]) -> int:
    return pipeline.settle_batch(payment_ids)


@shared_task(name="payments.refund", queue="execute", **_RETRY)
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


STAGE_TASKS = {
    "validate": validate,
    "execute": execute,
    "resolve": resolve,
    "settle": settle,
    "refund": refund,
}
