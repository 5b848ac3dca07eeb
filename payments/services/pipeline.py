"""The validate -> enrich -> execute -> settle chain, one batch of payment ids
at a time.

Every stage is idempotent: it only acts on payments still in the state it
expects (``transitions.transition``), so a redelivered task, a sweeper re-drive
or two workers on the same ids change nothing the second time. No transaction
is held across a gateway call: execute claims (commit), calls, then records.
"""

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.errors import InvalidRequest
from gateways.exceptions import RetryableSafe, UnknownOutcome
from gateways.services import (
    ChargeItem,
    charge_many,
    resolve_charge,
    resubmit_many,
)
from ledger.services import Settlement, fee_for, post_settlements
from payments import metrics
from payments.error_codes import FailureCode
from payments.models import DeadLetter, Merchant, Payment
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

# The stage that resolves a payment left in ``processing`` (its dead letters').
RESOLVE_STAGE = PAYMENT_STEPS[S.PROCESSING].stage


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


# What charging a payment needs to know, read in one query.
_CHARGE_FIELDS = (
    "id",
    "merchant_id",
    "amount",
    "currency",
    "source_id",
    "gateway",
    "created_at",
    "merchant__primary_gateway",
    "merchant__secondary_gateway",
)


def execute_batch(payment_ids: Sequence[str]) -> dict[str, int]:
    """enriched -> processing (committed), charge outside any transaction, record.

    The claim records the primary gateway as where the charge goes (and a
    failover, the secondary, before it is sent), so that a charge left without
    an answer is re-submitted only there (``resolve_processing``).
    """
    rows = list(
        Payment.objects.filter(pk__any_of=payment_ids, status=S.ENRICHED).values(
            *_CHARGE_FIELDS
        )
    )
    if not rows:
        return {}
    claimed = set(
        transition(
            payment_ids=[r["id"] for r in rows],
            expected=S.ENRICHED,
            new=PAYMENT_STEPS[S.ENRICHED].then,
            bump_attempts=True,
            per_payment={
                r["id"]: {"gateway": r["merchant__primary_gateway"]} for r in rows
            },
        )
    )
    if not claimed:
        return {}
    return _charge_and_record(
        [
            {**r, "gateway": r["merchant__primary_gateway"]}
            for r in rows
            if r["id"] in claimed
        ]
    )


def _record_failover(moves: list[tuple[str, str]]) -> None:
    """Before a failover is sent: the secondary is now where the charge went."""
    by_gateway: dict[str, list[str]] = defaultdict(list)
    for payment_id, gateway in moves:
        by_gateway[gateway].append(payment_id)
    for gateway, ids in by_gateway.items():
        Payment.objects.filter(pk__any_of=ids, status=S.PROCESSING).update(
            gateway=gateway
        )


def _charge_and_record(rows: list[dict], *, resubmit: bool = False) -> dict[str, int]:
    """Charge ``processing`` payments and record the outcomes.

    A first charge goes through the merchant's route (failover to the
    secondary only where the primary provably did not charge). A re-submission
    (``resubmit``) goes to the gateway the charge was sent to, and only there:
    the same idempotency key finds the first charge if there was one.
    """
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
    if resubmit:
        outcomes = resubmit_many(
            [(item, _sent_to(r)) for item, r in zip(items, rows, strict=True)]
        )
    else:
        outcomes = charge_many(items, before_failover=_record_failover)
    counts = record_outcomes(list(zip((r["id"] for r in rows), outcomes, strict=True)))
    if unreadable:  # nothing was sent for these: fail them for a human to see
        counts["failed"] = counts.get("failed", 0) + fail_with_dead_letter(
            unreadable,
            stage="execute",
            code=FailureCode.CARD_UNAVAILABLE,
            message="The card could not be read from the vault.",
        )
    return counts


def _sent_to(row: dict) -> str:
    """The gateway a processing payment's charge was (last) sent to; for one
    claimed before it was recorded, the primary (always tried first)."""
    return row["gateway"] or row["merchant__primary_gateway"]


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
            "fee", "merchant__fee_bps", "merchant__fee_fixed",
        )
    )  # fmt: skip
    if not rows:
        return 0
    # The fee quoted at enrich is the fee posted; a payment that never went
    # through enrich (in flight when it was introduced) is quoted here.
    fees = {
        r["id"]: r["fee"] if r["fee"] is not None else fee_for(
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

    Found at a gateway: record it. Found nowhere: that is no proof (a request
    sent without an answer may still land, and a processor's search may lag),
    so re-submit it to the gateway it was sent to, under the same idempotency
    key, and nowhere else; if that gateway cannot take it now (breaker open),
    the next sweep tries again. Still unknown SURGE_UNKNOWN_ESCALATE_AFTER
    after it was accepted: a dead letter (stage ``resolve``) asks a human to
    look, and the inquiries go on.
    """
    rows = list(
        Payment.objects.filter(pk__any_of=payment_ids, status=S.PROCESSING).values(
            *_CHARGE_FIELDS
        )
    )
    found: list[tuple[str, object]] = []
    absent: list[dict] = []
    for r in rows:
        try:
            outcome = resolve_charge(
                payment_id=r["id"],
                primary=r["merchant__primary_gateway"],
                secondary=r["merchant__secondary_gateway"],
                sent_to=_sent_to(r),
            )
        except Exception as exc:  # inquiry itself failed: try again next sweep
            logger.warning("inquiry for %s failed: %s", r["id"], type(exc).__name__)
            continue
        if outcome is None:
            absent.append(r)
        else:
            found.append((r["id"], outcome))
    counts = record_outcomes(found) if found else {}
    if absent:
        resubmitted = _charge_and_record(absent, resubmit=True)
        for key, value in resubmitted.items():
            counts[key] = counts.get(key, 0) + value
    escalated = escalate_unknown(rows)
    if escalated:
        counts["escalated"] = escalated
    return counts


def escalate_unknown(rows: Sequence[dict]) -> int:
    """Open (or bump) a ``resolve`` dead letter for each of these payments
    still ``processing`` SURGE_UNKNOWN_ESCALATE_AFTER after it was accepted.

    A payment whose ``resolve`` letter a person has already resolved is not
    escalated again: they have looked. Nothing here changes the payment.
    """
    cutoff = timezone.now() - timedelta(seconds=settings.SURGE_UNKNOWN_ESCALATE_AFTER)
    old = {r["id"]: r for r in rows if r["created_at"] < cutoff}
    if not old:
        return 0
    looked_at = DeadLetter.objects.filter(
        payment_id__in=list(old),
        stage=RESOLVE_STAGE,
        status=DeadLetter.Status.RESOLVED,
    ).values("payment_id")
    still = set(
        Payment.objects.filter(pk__any_of=list(old), status=S.PROCESSING)
        .exclude(pk__in=looked_at)
        .values_list("id", flat=True)
    )
    for pid in still:
        dead_letter_record(
            stage=RESOLVE_STAGE,
            error_class=UnknownOutcome.__name__,
            message=(
                f"Accepted {old[pid]['created_at'].isoformat()}; its outcome at "
                f"{_sent_to(old[pid])} is still unknown. Inquiries continue; it "
                "is never charged on another gateway."
            ),
            payment_id=pid,
        )
    return len(still)
