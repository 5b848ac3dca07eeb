"""Sending work to the next stage: the workflow table says which task and queue.

Tasks are sent by name (``send_task``), so nothing here imports the task
module: the stages hand on without an import circle through ``payments.tasks``.
Only committed work is handed on; a crash before the send is caught by the
sweeper (the database, not the broker, is the source of truth).
"""

from collections.abc import Iterator, Sequence

from celery import current_app
from django.conf import settings

from payments.workflow import PAYMENT_STEPS, STEPS, Step


def chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def send(step: Step, ids: Sequence[str]) -> None:
    """Send ``ids`` to ``step``'s task, in tasks of at most SURGE_TASK_BATCH_SIZE."""
    if not ids:
        return
    for chunk in chunks(list(ids), settings.SURGE_TASK_BATCH_SIZE):
        current_app.send_task(step.task, args=[list(chunk)], queue=step.queue)


def publish(stage: str, ids: Sequence[str]) -> None:
    """Send ``ids`` to the stage named ``stage`` (operators, tests)."""
    send(STEPS[stage], ids)


def hand_on(status: str, payment_ids: Sequence[str]) -> None:
    """Send payments that a stage has just moved to ``status`` (committed) on to
    the step that takes them from there; a final status has none."""
    step = PAYMENT_STEPS.get(status)
    if step is not None:
        send(step, payment_ids)
