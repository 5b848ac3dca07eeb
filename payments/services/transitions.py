"""The one place a payment's status changes: a conditional update plus its event.

``UPDATE ... WHERE id IN (...) AND status = <expected>`` is the guard that makes
every stage idempotent: a second run, a redelivered task or a racing worker
finds nothing in the expected state and changes nothing.
"""

from collections.abc import Iterable, Mapping, Sequence

from django.db import transaction
from django.utils import timezone

from payments import sql
from payments.exceptions import IllegalTransition
from payments.services.events import events_insert
from payments.state import EVENT_FOR_STATUS, can_transition

# What a transition may write besides status and updated_at.
_UPDATABLE = frozenset(
    {
        "failure_code",
        "failure_message",
        "gateway",
        "gateway_reference",
        "fee",
        "settled_at",
        "enrichment",
    }
)


def _check(expected: str, new: str, operator: bool) -> None:
    if not can_transition(expected, new, operator=operator):
        raise IllegalTransition(f"A {expected} payment cannot become {new}.")


def transition(
    *,
    payment_ids: Sequence[str],
    expected: str,
    new: str,
    fields: Mapping[str, object] | None = None,
    per_payment: Mapping[str, Mapping[str, object]] | None = None,
    bump_attempts: bool = False,
    operator: bool = False,
) -> list[str]:
    """Move every payment in ``payment_ids`` that is still ``expected`` to ``new``.

    ``fields`` apply to all moved payments, ``per_payment`` to single ones.
    Writes one event per moved payment in the same transaction and returns the
    moved ids (the others were already elsewhere: not an error). ``operator``
    also allows the operator-only moves (``state.OPERATOR_TRANSITIONS``).
    """
    _check(expected, new, operator)
    if not payment_ids:
        return []
    fields = dict(fields or {})
    unknown = (
        set(fields) | {k for v in (per_payment or {}).values() for k in v}
    ) - _UPDATABLE
    if unknown:
        raise ValueError(f"not updatable by a transition: {sorted(unknown)}")
    ids = list(payment_ids)
    columns: list[str] = []
    if per_payment:
        columns = sorted(next(iter(per_payment.values())))
        if set(per_payment) != set(ids) or any(
            sorted(v) != columns for v in per_payment.values()
        ):
            raise ValueError("per_payment must set the same fields for every id")
    with transaction.atomic(savepoint=False):
        moved = sql.transition_update(
            ids=ids,
            expected=expected,
            new=new,
            now=timezone.now(),
            fields=fields,
            per_payment=per_payment,
            columns=columns,
            bump_attempts=bump_attempts,
        )
        _write_events(moved, new, fields, per_payment)
    return [pid for pid, _ in moved]


def _write_events(
    moved: Iterable[tuple[str, str]],
    new: str,
    fields: Mapping[str, object],
    per_payment: Mapping[str, Mapping[str, object]] | None,
) -> None:
    rows = []
    for pid, merchant_id in moved:
        data = {"status": new}
        extra = (per_payment or {}).get(pid) or fields
        for key in ("failure_code", "gateway", "fee"):
            if extra.get(key) not in (None, ""):
                data[key] = extra[key]
        rows.append((merchant_id, pid, data))
    # The pipeline hands each batch on to its next stage itself, right after
    # commit (a crash in between is caught by the sweeper), so these events are
    # written published: the relay only carries what a request accepted.
    events_insert(EVENT_FOR_STATUS[new], rows, published=True)
