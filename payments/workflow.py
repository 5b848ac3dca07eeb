"""The payment's workflow, declared once: which stage takes a payment in each
status, through which Celery task and queue, and where its success leads.

The relay (an accepted payment's event), the sweeper (a payment left too long
in a status), every stage's hand-off (a batch it moved on) and the Celery task
definitions all read this table; no stage names the one after it. No ORM code
and no Celery import here, so anything may import it.
"""

from dataclasses import dataclass

from payments.state import (
    AWAITING_OPERATOR,
    EVENT_FOR_REFUND_STATUS,
    EVENT_FOR_STATUS,
    TERMINAL,
    TRANSITIONS,
    RefundStatus,
)
from payments.state import PaymentStatus as S


@dataclass(frozen=True, slots=True)
class Step:
    """The work due for items in one status."""

    stage: str  # the stage's name: dead letters, logs, `replay`
    task: str  # the Celery task that runs it, on a batch of ids
    queue: str  # the Celery queue that task is sent to
    then: str | None  # the status a success leads to; None: the stage decides


# Payments: status -> the step that moves a payment on from it. A status that
# is neither here nor final waits for a person (``state.AWAITING_OPERATOR``:
# ``review``); the sweeper leaves it alone.
PAYMENT_STEPS: dict[str, Step] = {
    S.PENDING: Step("validate", "payments.validate", "validate", S.VALIDATED),
    # Enrich runs on validate's queue: it reads the database only (no gateway
    # call), so it never waits behind a slow processor. A risk ``review`` or
    # ``block`` leads elsewhere; ``then`` is where an allowed payment goes.
    S.VALIDATED: Step("enrich", "payments.enrich", "validate", S.ENRICHED),
    S.ENRICHED: Step("execute", "payments.execute", "execute", S.PROCESSING),
    # Found in `processing`: the gateway call's outcome was never recorded. An
    # inquiry resolves it; never a second charge.
    S.PROCESSING: Step("resolve", "payments.resolve", "execute", None),
    S.SUCCEEDED: Step("settle", "payments.settle", "settle", S.SETTLED),
}

# Refunds run the same way: a pending refund is executed at the gateway.
REFUND_STEPS: dict[str, Step] = {
    RefundStatus.PENDING: Step("refund", "payments.refund", "execute", None),
}

# The event that announces each step's work when a request accepts it: the
# relay reads these (and `replay` re-publishes them).
REFUND_CREATED = EVENT_FOR_REFUND_STATUS[RefundStatus.PENDING]
STEP_FOR_EVENT: dict[str, Step] = {
    **{EVENT_FOR_STATUS[status]: step for status, step in PAYMENT_STEPS.items()},
    REFUND_CREATED: REFUND_STEPS[RefundStatus.PENDING],
}

STEPS: dict[str, Step] = {
    step.stage: step for step in (*PAYMENT_STEPS.values(), *REFUND_STEPS.values())
}

# The queues the pipeline's workers consume.
STAGE_QUEUES: tuple[str, ...] = tuple(dict.fromkeys(s.queue for s in STEPS.values()))


def _check() -> None:
    """The table agrees with the state machine (run at import: a bad edit fails
    every process at start, not a payment in flight)."""
    for status in set(TRANSITIONS) - TERMINAL - AWAITING_OPERATOR:
        if status not in PAYMENT_STEPS:
            raise AssertionError(f"open status {status} has no step")
    for status, step in PAYMENT_STEPS.items():
        if status in TERMINAL or status in AWAITING_OPERATOR:
            raise AssertionError(f"final status {status} has a step")
        if step.then is not None and step.then not in TRANSITIONS[status]:
            raise AssertionError(f"{status} cannot become {step.then}")
    if len(STEPS) != len(PAYMENT_STEPS) + len(REFUND_STEPS):
        raise AssertionError("two steps share a stage name")


_check()
