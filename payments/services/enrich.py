"""The enrich stage: a validated payment gets its card metadata (the vault's
BIN data), the merchant's route (gateway, and why), the fee quote (the fee
settle posts) and a risk verdict, then moves on:

- ``allow``: ``validated -> enriched``, handed to execute;
- ``review``: ``validated -> review`` and a dead letter of stage ``review``;
  an operator approves (on to execute) or declines it
  (``services.operations.review_approve`` / ``review_decline``);
- ``block``: ``validated -> declined``, ``failure_code`` ``risk_blocked``.

Idempotent like every stage: each move is a conditional UPDATE from
``validated``, with its events, in one transaction with the velocity entries
the verdicts counted. A batch costs a read of its merchants, one of its
payments, one of the BIN data, and the transition's UPDATE and events (the
enrichment rides in that UPDATE); velocity rules, where a merchant has them,
two statements more. The rules cost nothing when no merchant of the batch has
one.
"""

from collections import defaultdict
from collections.abc import Sequence

from django.db import transaction

from core import jsoncodec
from gateways.selectors import route_for
from ledger.services import fee_for
from payments import metrics, sql
from payments.error_codes import FailureCode
from payments.models import DeadLetter, Merchant, Payment
from payments.services import risk
from payments.services.handoff import hand_on
from payments.services.transitions import transition
from payments.state import PaymentStatus as S
from payments.workflow import PAYMENT_STEPS
from vault.selectors import bins_lookup

# The dead letters of payments held for review carry this stage.
REVIEW_STAGE = "review"

_PAYMENT_FIELDS = ("id", "merchant_id", "amount", "source__brand", "source__bin")
# What only velocity rules look at (read when a merchant of the batch has one).
_VELOCITY_FIELDS = ("created_at", "customer", "source__fingerprint")
_MERCHANT_FIELDS = (
    "id",
    "fee_bps",
    "fee_fixed",
    "primary_gateway",
    "secondary_gateway",
    *risk.MERCHANT_FIELDS,
)


def enrich_batch(payment_ids: Sequence[str]) -> dict[str, int]:
    """validated -> enriched / review / declined (see the module's docstring)."""
    pending = Payment.objects.filter(pk__any_of=payment_ids, status=S.VALIDATED)
    merchants = {
        m["id"]: m
        for m in Merchant.objects.filter(pk__in=pending.values("merchant_id")).values(
            *_MERCHANT_FIELDS
        )
    }
    if not merchants:
        return {}
    rules = {mid: risk.Rules.of(m) for mid, m in merchants.items()}
    assessing = any(r.any_on for r in rules.values())
    velocity = any(r.card.on or r.customer.on for r in rules.values())
    # A payment validated between the two reads (its merchant unread) is
    # left for its own hand-off, or the sweeper.
    rows = [
        r
        for r in pending.values(
            *_PAYMENT_FIELDS, *(_VELOCITY_FIELDS if velocity else ())
        )
        if r["merchant_id"] in merchants
    ]
    if not rows:
        return {}
    routes = {
        mid: route_for(
            primary=m["primary_gateway"], secondary=m["secondary_gateway"]
        ).as_dict()
        for mid, m in merchants.items()
    }
    bins = bins_lookup(r["source__bin"] for r in rows)
    verdicts: dict[str, risk.Verdict] = {}
    by_outcome: dict[str, dict[str, dict]] = defaultdict(dict)
    # One document per (merchant, card data, verdict): encoded once a batch.
    documents: dict[tuple, sql.JSONText] = {}
    step = PAYMENT_STEPS[S.VALIDATED]
    with transaction.atomic():
        if assessing:
            verdicts = risk.assess([_candidate(r, bins) for r in rows], rules)
        for r in rows:
            mid, verdict = r["merchant_id"], verdicts.get(r["id"], risk.ALLOW)
            meta = bins.get(r["source__bin"])
            key = (mid, r["source__brand"], meta, verdict)
            document = documents.get(key)
            if document is None:
                document = documents[key] = sql.JSONText(
                    jsoncodec.compact(
                        {
                            "card": {
                                "brand": r["source__brand"],
                                "funding": (meta and meta.funding) or None,
                                "country": (meta and meta.country) or None,
                            },
                            "route": routes[mid],
                            "risk": verdict.as_dict(),
                        }
                    )
                )
            m = merchants[mid]
            fields = {
                "enrichment": document,
                "fee": fee_for(
                    amount=r["amount"], fee_bps=m["fee_bps"], fee_fixed=m["fee_fixed"]
                ),
            }
            if verdict.outcome == risk.Outcome.BLOCK:
                fields.update(
                    fee=None,
                    failure_code=FailureCode.RISK_BLOCKED,
                    failure_message=f"Blocked by the risk rule {verdict.rule}.",
                )
            by_outcome[verdict.outcome][r["id"]] = fields
        enriched = _move(by_outcome[risk.Outcome.ALLOW], step.then)
        held = _move(by_outcome[risk.Outcome.REVIEW], S.REVIEW)
        DeadLetter.objects.bulk_create(
            [
                DeadLetter(
                    payment_id=pid,
                    stage=REVIEW_STAGE,
                    error_class="RiskReview",
                    message=(
                        f"Held for review by the risk rule {verdicts[pid].rule}: "
                        "approve it (on to execute) or decline it."
                    ),
                )
                for pid in held
            ],
            ignore_conflicts=True,  # one open letter per payment and stage
        )
        blocked = _move(by_outcome[risk.Outcome.BLOCK], S.DECLINED)
    hand_on(step.then, enriched)  # committed: hand on directly, no relay hop
    metrics.payment_finished(S.DECLINED, FailureCode.RISK_BLOCKED, len(blocked))
    return {"enriched": len(enriched), "review": len(held), "blocked": len(blocked)}


def _candidate(row: dict, bins: dict) -> risk.Candidate:
    meta = bins.get(row["source__bin"])
    return risk.Candidate(
        payment_id=row["id"],
        merchant_id=row["merchant_id"],
        amount=row["amount"],
        created_at=row.get("created_at"),
        bin=row["source__bin"],
        country=(meta and meta.country) or "",
        fingerprint=row.get("source__fingerprint", ""),
        customer=row.get("customer", ""),
    )


def _move(per_payment: dict[str, dict], new: str) -> list[str]:
    return transition(
        payment_ids=list(per_payment),
        expected=S.VALIDATED,
        new=new,
        per_payment=per_payment,
    )
