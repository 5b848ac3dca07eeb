"""The validate -> execute -> settle chain, one batch of payment ids at a time.

Every stage is idempotent: it only acts on payments still in the state it
expects (``transitions.transition``), so a redelivered task, a sweeper re-drive
or two workers on the same ids change nothing the second time. No transaction
is held across a gateway call: execute claims (commit), calls, then records.
"""

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from core.errors import InvalidRequest
from gateways.exceptions import RetryableSafe
from gateways.services import ChargeItem, charge_many, resolve_charge
from ledger.services import Settlement, fee_for, post_settlements
from payments import metrics
from payments.error_codes import FailureCode
from payments.models import Merchant, Payment
from payments.services.deadletters import dead_letter_record
from payments.services.handoff import hand_on
from payments.services.intake import check_amount_and_currency
from payments.services.transitions import transition
from payments.state import PaymentStatus as S
from payments.workflow import PAYMENT_STEPS
from vault.cards import is_expired
from vault.exceptions import TokenNotFound, VaultIntegrityError
from vault.services import detokenize, detokenize_many

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Failure:
    code: str
    message: str


def _validation_failure(row: dict, merchant: Merchant, today) -> Failure | None:
    """The merchant's rules are intake's own (the same function), re-checked
    here because the merchant may have changed since the payment was accepted."""
    if not merchant.is_active:
        return Failure(
            FailureCode.MERCHANT_INACTIVE, "The merchant account is not active."
        )
    if row["source__merchant_id"] != row["merchant_id"]:
        return Failure(
            FailureCode.INVALID_SOURCE,
            "The card token does not belong to the merchant.",
        )
    if is_expired(
        exp_month=row["source__exp_month"],
        exp_year=row["source__exp_year"],
        today=today,
    ):
        return Failure(FailureCode.EXPIRED_CARD, "The card has expired.")
    try:
        check_amount_and_currency(
            merchant=merchant, amount=row["amount"], currency=row["currency"]
        )
    except InvalidRequest as exc:
        return Failure(exc.code, exc.message)
    return None


def validate_batch(payment_ids: Sequence[str]) -> dict[str, int]:
    """pending -> validated, or -> failed with a failure_code (not a dead letter)."""
    rows = list(
        Payment.objects.filter(pk__any_of=payment_ids, status=S.PENDING).values(
            "id", "merchant_id", "amount", "currency",
            "source__merchant_id", "source__exp_year", "source__exp_month",
        )
    )  # fmt: skip
    merchants = Merchant.objects.in_bulk({r["merchant_id"] for r in rows})
    today = timezone.now().date()
    valid: list[str] = []
    failed: dict[Failure, list[str]] = defaultdict(list)
    for row in rows:
        failure = _validation_failure(row, merchants[row["merchant_id"]], today)
        if failure is None:
            valid.append(row["id"])
        else:
            failed[failure].append(row["id"])
    step = PAYMENT_STEPS[S.PENDING]
    moved = transition(payment_ids=valid, expected=S.PENDING, new=step.then)
    hand_on(step.then, moved)  # committed: hand on directly, no relay hop
    counts = {"validated": len(moved), "failed": 0}
    for failure, ids in failed.items():
        done = transition(
            payment_ids=ids,
            expected=S.PENDING,
            new=S.FAILED,
            fields={"failure_code": failure.code, "failure_message": failure.message},
        )
        counts["failed"] += len(done)
        metrics.payment_finished(S.FAILED, failure.code, len(done))
    return counts


def execute_batch(payment_ids: Sequence[str]) -> dict[str, int]:
    """validated -> processing (committed), charge outside any transaction, record."""
    claimed = transition(
        payment_ids=list(payment_ids),
        expected=S.VALIDATED,
        new=PAYMENT_STEPS[S.VALIDATED].then,
        bump_attempts=True,
    )
    if not claimed:
        return {}
    return charge_and_record(claimed)


def charge_and_record(payment_ids: Sequence[str]) -> dict[str, int]:
    """Charge ``processing`` payments through their merchant's route and record it.

    Safe to repeat for the same payment: the gateway idempotency key is derived
    from the payment and gateway, so a repeat finds the first charge.
    """
    rows = list(
        Payment.objects.filter(pk__any_of=payment_ids, status=S.PROCESSING).values(
            "id",
            "merchant_id",
            "amount",
            "currency",
            "source_id",
            "merchant__primary_gateway",
            "merchant__secondary_gateway",
        )
    )
    if not rows:
        return {}
    cards, unreadable = _cards_for(rows)
    rows = [r for r in rows if r["id"] not in unreadable]
    items = [
        ChargeItem(
            payment_id=r["id"],
            merchant_id=r["merchant_id"],
            amount=r["amount"],
            currency=r["currency"],
            card=cards[r["source_id"]],
            primary=r["merchant__primary_gateway"],
            secondary=r["merchant__secondary_gateway"],
        )
        for r in rows
    ]
    outcomes = charge_many(items)
    counts = record_outcomes(list(zip((r["id"] for r in rows), outcomes, strict=True)))
    if unreadable:  # nothing was sent for these: fail them for a human to see
        counts["failed"] = counts.get("failed", 0) + fail_with_dead_letter(
            unreadable,
            stage="execute",
            code=FailureCode.CARD_UNAVAILABLE,
            message="The card could not be read from the vault.",
        )
    return counts


def _cards_for(rows: list[dict]) -> tuple[dict, dict[str, Exception]]:
    """Cards by token id, and the payments whose token cannot be opened.

    One bad token (missing, or a ciphertext that will not decrypt) must not
    hold back the batch, nor come back forever through the sweeper.
    """
    try:
        return detokenize_many([r["source_id"] for r in rows]), {}
    except (TokenNotFound, VaultIntegrityError):
        pass
    cards, unreadable = {}, {}
    for r in rows:
        try:
            cards[r["source_id"]] = detokenize(token_id=r["source_id"])
        except (TokenNotFound, VaultIntegrityError) as exc:
            unreadable[r["id"]] = exc
    return cards, unreadable


def record_outcomes(results: Sequence[tuple[str, object]]) -> dict[str, int]:
    """Apply gateway outcomes (or classified errors) to processing payments."""
    succeeded: dict[str, dict] = {}
    declined: dict[str, dict] = {}
    unavailable: dict[str, Exception] = {}
    unknown = 0
    for payment_id, outcome in results:
        if isinstance(outcome, RetryableSafe):
            unavailable[payment_id] = outcome
        elif isinstance(outcome, Exception):
            # Unknown outcome (or a bug): we cannot know whether money moved, so
            # the payment stays processing and the sweeper resolves it by inquiry.
            unknown += 1
            logger.warning(
                "payment %s outcome unknown (%s); left for inquiry",
                payment_id,
                type(outcome).__name__,
            )
        elif outcome.status == "succeeded":
            succeeded[payment_id] = {
                "gateway": outcome.gateway,
                "gateway_reference": outcome.reference,
            }
        else:
            declined[payment_id] = {
                "gateway": outcome.gateway,
                "gateway_reference": outcome.reference,
                "failure_code": outcome.decline_code or FailureCode.CARD_DECLINED,
            }
    counts = {"unknown": unknown}
    moved = transition(
        payment_ids=list(succeeded), expected=S.PROCESSING, new=S.SUCCEEDED,
        per_payment=succeeded,
    )  # fmt: skip
    hand_on(S.SUCCEEDED, moved)  # committed: hand on directly, no relay hop
    counts["succeeded"] = len(moved)
    done = transition(
        payment_ids=list(declined), expected=S.PROCESSING, new=S.DECLINED,
        per_payment=declined,
    )  # fmt: skip
    counts["declined"] = len(done)
    for pid in done:
        metrics.payment_finished(S.DECLINED, declined[pid]["failure_code"], 1)
    counts["failed"] = fail_with_dead_letter(
        unavailable, stage="execute", code=FailureCode.GATEWAY_UNAVAILABLE
    )
    return counts


def fail_with_dead_letter(
    errors: dict[str, Exception],
    *,
    stage: str,
    code: str,
    message: str = "Retries exhausted.",
) -> int:
    """Mark payments failed and open a dead letter for each, in one transaction."""
    if not errors:
        return 0
    with transaction.atomic():
        moved = transition(
            payment_ids=list(errors),
            expected=S.PROCESSING,
            new=S.FAILED,
            fields={"failure_code": code, "failure_message": message},
        )
        for pid in moved:
            exc = errors[pid]
            dead_letter_record(
                stage=stage,
                error_class=type(exc).__name__,
                message=str(exc),
                payment_id=pid,
            )
    metrics.payment_finished(S.FAILED, code, len(moved))
    return len(moved)


def settle_batch(payment_ids: Sequence[str]) -> int:
    """succeeded -> settled and the ledger entries, in one transaction."""
    rows = list(
        Payment.objects.filter(pk__any_of=payment_ids, status=S.SUCCEEDED).values(
            "id", "merchant_id", "amount", "currency", "gateway", "created_at",
            "merchant__fee_bps", "merchant__fee_fixed",
        )
    )  # fmt: skip
    if not rows:
        return 0
    fees = {
        r["id"]: fee_for(
            amount=r["amount"], fee_bps=r["merchant__fee_bps"],
            fee_fixed=r["merchant__fee_fixed"],
        )
        for r in rows
    }  # fmt: skip
    now = timezone.now()
    with transaction.atomic():
        moved = set(
            transition(
                payment_ids=[r["id"] for r in rows],
                expected=S.SUCCEEDED,
                new=PAYMENT_STEPS[S.SUCCEEDED].then,
                fields={"settled_at": now},
                per_payment={pid: {"fee": fee} for pid, fee in fees.items()},
            )
        )
        post_settlements(
            [
                Settlement(
                    payment_id=r["id"],
                    merchant_id=r["merchant_id"],
                    gateway=r["gateway"],
                    amount=r["amount"],
                    currency=r["currency"],
                    fee=fees[r["id"]],
                )
                for r in rows
                if r["id"] in moved
            ]
        )
    metrics.payments_settled([now - r["created_at"] for r in rows if r["id"] in moved])
    return len(moved)


def resolve_processing(payment_ids: Sequence[str]) -> dict[str, int]:
    """Finish payments stuck in ``processing`` by a status inquiry, never a 2nd charge.

    Found at a gateway: record it. Provably absent everywhere: the charge never
    happened, so submit it (same idempotency key, so still at most one charge).
    Still unknown: leave it for the next sweep.
    """
    rows = list(
        Payment.objects.filter(pk__any_of=payment_ids, status=S.PROCESSING).values(
            "id", "merchant__primary_gateway", "merchant__secondary_gateway"
        )
    )
    found: list[tuple[str, object]] = []
    absent: list[str] = []
    for r in rows:
        try:
            outcome = resolve_charge(
                payment_id=r["id"],
                primary=r["merchant__primary_gateway"],
                secondary=r["merchant__secondary_gateway"],
            )
        except Exception as exc:  # inquiry itself failed: try again next sweep
            logger.warning("inquiry for %s failed: %s", r["id"], type(exc).__name__)
            continue
        if outcome is None:
            absent.append(r["id"])
        else:
            found.append((r["id"], outcome))
    counts = record_outcomes(found) if found else {}
    if absent:
        recharged = charge_and_record(absent)
        for key, value in recharged.items():
            counts[key] = counts.get(key, 0) + value
    return counts
