"""Operator actions (admin, commands): each one that does something leaves an
audit record (who, when, what, why); a refusal changes nothing.

Dead letters:

- **retry** re-drives the letter's payment. A payment stuck in a status the
  workflow moves on (pending, validated, succeeded) is sent to that stage
  again (each stage is idempotent). A payment that *failed provably
  uncharged* (``state.OPERATOR_RETRYABLE_FAILURES``) makes the operator-only
  move ``failed -> validated`` and is charged again under the same
  per-gateway idempotency keys. A declined payment is a final business
  outcome and is never retried; a payment whose outcome is unknown
  (``processing``) is never re-charged from here: its inquiries go on.
- **refund** goes through ``refunds.refund_create``, the API's own service.
- **resolve** needs a reason; **escalate** an owner and a note (the letter
  stays open, flagged, until someone resolves it).
- **approve** / **decline** a risk review (a letter of stage ``review``): the
  operator-only move ``review -> enriched`` (then execute charges it) or
  ``review -> declined`` (``risk_declined``); either needs a reason and
  resolves the letter.
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from core.errors import InvalidRequest, SurgeError
from payments import metrics
from payments.error_codes import FailureCode
from payments.models import (
    ApiKey,
    AuditLog,
    DeadLetter,
    Merchant,
    OpenPayment,
    Payment,
    WebhookDelivery,
    WebhookEndpoint,
)
from payments.services.deadletters import dead_letter_resolve
from payments.services.enrich import REVIEW_STAGE
from payments.services.handoff import hand_on, send
from payments.services.keys import api_key_revoke
from payments.services.refunds import refund_create
from payments.services.risk import merchant_risk_update, risk_rules_describe
from payments.services.transitions import transition
from payments.services.webhooks import webhook_delivery_retry
from payments.services.webhooks import webhook_endpoint_disable as endpoint_disable
from payments.state import OPERATOR_RETRYABLE_FAILURES
from payments.state import PaymentStatus as S
from payments.workflow import PAYMENT_STEPS


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an operator action did (``done``) or why it did nothing."""

    done: bool
    message: str

    def __bool__(self) -> bool:
        return self.done

    def __str__(self) -> str:
        return self.message


def audit(
    *,
    actor: str,
    action: str,
    obj,
    detail: str = "",
    reason: str = "",
    payment_id: str | None = None,
) -> AuditLog:
    """Record who did ``action`` to ``obj``, and why. A record about a payment,
    or about something of one payment's (a dead letter, a refund, a webhook
    delivery), is tied to that payment for its admin page."""
    if payment_id is None:
        payment_id = obj.pk if isinstance(obj, Payment) else None
        payment_id = payment_id or getattr(obj, "payment_id", None) or ""
    return AuditLog.objects.create(
        actor=actor,
        action=action,
        object_type=type(obj).__name__,
        object_id=str(obj.pk),
        payment_id=payment_id,
        reason=reason[:2000],
        detail=detail[:2000],
    )


def _required(value: str, param: str, what: str) -> str:
    value = (value or "").strip()
    if not value:
        raise InvalidRequest(f"{what} is required.", param=param)
    return value


def _fresh(dead_letter: DeadLetter) -> DeadLetter:
    """The letter and its payment as they are now, not as a page saw them."""
    return DeadLetter.objects.select_related("payment__merchant").get(pk=dead_letter.pk)


def _retry_failed(payment: Payment) -> Outcome:
    """Move a payment that failed provably uncharged back to ``validated`` and
    hand it to the execute stage after commit. Refused for anything else: a
    declined payment, one that failed for another reason, one no longer failed.
    """
    payment = Payment.objects.get(pk=payment.pk)
    if payment.status != S.FAILED:
        return Outcome(False, f"payment is {payment.status}, not failed")
    if payment.failure_code not in OPERATOR_RETRYABLE_FAILURES:
        return Outcome(
            False,
            f"payment failed with {payment.failure_code or 'no code'}: "
            "not provably uncharged; not retried",
        )
    moved = transition(
        payment_ids=[payment.pk],
        expected=S.FAILED,
        new=S.VALIDATED,
        fields={"failure_code": "", "failure_message": ""},
        operator=True,
    )
    if not moved:  # another operator got there first
        return Outcome(False, "payment is no longer failed; not retried")
    # The open-payments triggers add a row on insert only: put the payment
    # back on the sweeper's list, so a lost hand-off is still re-driven.
    OpenPayment.objects.bulk_create(
        [OpenPayment(payment_id=payment.pk, opened_at=timezone.now())],
        ignore_conflicts=True,
    )
    transaction.on_commit(lambda: hand_on(S.VALIDATED, moved))
    return Outcome(
        True,
        f"payment was failed ({payment.failure_code}, provably uncharged): "
        f"moved back to validated and sent to {PAYMENT_STEPS[S.VALIDATED].stage}",
    )


def dead_letter_retry(
    *, dead_letter: DeadLetter, actor: str, reason: str = ""
) -> Outcome:
    """Re-drive the dead letter's payment (see the module's docstring)."""
    dead_letter = _fresh(dead_letter)
    payment = dead_letter.payment
    if dead_letter.status != DeadLetter.Status.OPEN:
        return Outcome(False, "the dead letter is resolved; not retried")
    if payment is None:
        return Outcome(False, "no payment attached; nothing to retry")
    if payment.status == S.FAILED:
        with transaction.atomic():
            outcome = _retry_failed(payment)
            if outcome.done:
                dead_letter_resolve(
                    dead_letter=dead_letter,
                    resolution=f"retried by {actor}: payment sent on again",
                )
                audit(
                    actor=actor,
                    action="dead_letter.retry",
                    obj=dead_letter,
                    detail=outcome.message,
                    reason=reason,
                )
        return outcome
    if payment.status == S.PROCESSING:
        return Outcome(
            False,
            "payment outcome is unknown (processing): never charged again from "
            "here; its status inquiries go on. Escalate or resolve instead",
        )
    if payment.status == S.REVIEW:
        return Outcome(
            False, "payment is held for risk review: approve or decline it instead"
        )
    step = PAYMENT_STEPS.get(payment.status)
    if step is None:
        return Outcome(False, f"payment is final ({payment.status}); not retried")
    message = f"re-driven from {payment.status} ({step.stage})"
    with transaction.atomic():
        audit(
            actor=actor,
            action="dead_letter.retry",
            obj=dead_letter,
            detail=message,
            reason=reason,
        )
        transaction.on_commit(lambda: send(step, [payment.pk]))
    return Outcome(True, message)


def dead_letter_refund(
    *, dead_letter: DeadLetter, actor: str, amount: int | None = None, reason: str = ""
) -> Outcome:
    """Refund the letter's settled payment, in full (``amount`` None: what is
    left) or in part, through the API's refund service. An ``amount`` the
    service refuses raises its error (bad input); any other refusal is an
    Outcome that did nothing."""
    dead_letter = _fresh(dead_letter)
    payment = dead_letter.payment
    if payment is None:
        return Outcome(False, "no payment attached; nothing to refund")
    try:
        with transaction.atomic():
            refund = refund_create(
                merchant=payment.merchant, payment_id=payment.pk, amount=amount
            )
            message = f"refund {refund.pk} of {refund.amount} {refund.currency} created"
            audit(
                actor=actor,
                action="dead_letter.refund",
                obj=dead_letter,
                detail=message,
                reason=reason,
            )
    except SurgeError as exc:
        if amount is not None and exc.param == "amount":
            raise  # the amount the operator gave is wrong: bad input, not a state
        return Outcome(False, exc.message)
    return Outcome(True, message)


def dead_letter_close(*, dead_letter: DeadLetter, actor: str, note: str) -> Outcome:
    """Resolve an open letter with a reason (required); audited. Refused (and
    nothing written) if it is resolved already."""
    note = _required(note, "reason", "A reason")
    with transaction.atomic():
        if not dead_letter_resolve(dead_letter=dead_letter, resolution=note):
            return Outcome(False, "already resolved")
        audit(
            actor=actor,
            action="dead_letter.resolve",
            obj=dead_letter,
            detail="resolved",
            reason=note,
        )
    return Outcome(True, "resolved")


def dead_letter_escalate(
    *, dead_letter: DeadLetter, actor: str, owner: str, note: str
) -> Outcome:
    """Flag an open letter for ``owner`` with a note; audited. It stays open."""
    owner = _required(owner, "owner", "An owner")
    note = _required(note, "note", "A note")
    with transaction.atomic():
        done = DeadLetter.objects.filter(
            pk=dead_letter.pk, status=DeadLetter.Status.OPEN
        ).update(
            escalated_at=timezone.now(),
            escalated_to=owner[:150],
            escalation_note=note[:2000],
        )
        if not done:
            return Outcome(False, "the dead letter is resolved; not escalated")
        audit(
            actor=actor,
            action="dead_letter.escalate",
            obj=dead_letter,
            detail=f"escalated to {owner}",
            reason=note,
        )
    return Outcome(True, f"escalated to {owner}")


def _review_letter(dead_letter: DeadLetter) -> tuple[DeadLetter, Outcome | None]:
    dead_letter = _fresh(dead_letter)
    if dead_letter.stage != REVIEW_STAGE or dead_letter.payment is None:
        return dead_letter, Outcome(False, "not a risk review; nothing to approve")
    if dead_letter.status != DeadLetter.Status.OPEN:
        return dead_letter, Outcome(False, "the review is closed already")
    return dead_letter, None


def review_approve(*, dead_letter: DeadLetter, actor: str, reason: str) -> Outcome:
    """Approve a payment held for risk review: ``review -> enriched``, then on
    to execute after commit; the letter resolved, audited. A reason is
    required; a payment no longer in review is left alone."""
    reason = _required(reason, "reason", "A reason")
    dead_letter, refused = _review_letter(dead_letter)
    if refused is not None:
        return refused
    with transaction.atomic():
        moved = transition(
            payment_ids=[dead_letter.payment_id],
            expected=S.REVIEW,
            new=S.ENRICHED,
            operator=True,
        )
        if not moved:  # another operator got there first
            return Outcome(False, "payment is no longer in review")
        message = (
            f"approved after risk review: sent to {PAYMENT_STEPS[S.ENRICHED].stage}"
        )
        dead_letter_resolve(
            dead_letter=dead_letter, resolution=f"approved by {actor}: {reason}"
        )
        audit(
            actor=actor,
            action="review.approve",
            obj=dead_letter,
            detail=message,
            reason=reason,
        )
        transaction.on_commit(lambda: hand_on(S.ENRICHED, moved))
    return Outcome(True, message)


def review_decline(*, dead_letter: DeadLetter, actor: str, reason: str) -> Outcome:
    """Decline a payment held for risk review: ``review -> declined`` with
    ``risk_declined`` (final; never charged); the letter resolved, audited."""
    reason = _required(reason, "reason", "A reason")
    dead_letter, refused = _review_letter(dead_letter)
    if refused is not None:
        return refused
    with transaction.atomic():
        moved = transition(
            payment_ids=[dead_letter.payment_id],
            expected=S.REVIEW,
            new=S.DECLINED,
            fields={
                "failure_code": FailureCode.RISK_DECLINED,
                "failure_message": "Declined after risk review.",
                "fee": None,
            },
            operator=True,
        )
        if not moved:
            return Outcome(False, "payment is no longer in review")
        dead_letter_resolve(
            dead_letter=dead_letter, resolution=f"declined by {actor}: {reason}"
        )
        message = f"declined after risk review ({FailureCode.RISK_DECLINED})"
        audit(
            actor=actor,
            action="review.decline",
            obj=dead_letter,
            detail=message,
            reason=reason,
        )
    metrics.payment_finished(S.DECLINED, FailureCode.RISK_DECLINED, 1)
    return Outcome(True, message)


def dead_letter_act(
    action: Callable[..., Outcome], dead_letters, **kwargs
) -> list[tuple[DeadLetter, Outcome]]:
    """Run one action on each letter; a refusal of one does not stop the rest."""
    return [(dl, action(dead_letter=dl, **kwargs)) for dl in dead_letters]


def merchant_risk_change(*, merchant: Merchant, changes: dict, actor: str) -> Merchant:
    """Change a merchant's risk rules (all or, on bad input, nothing); audited
    with the rules in force after the change."""
    with transaction.atomic():
        merchant = merchant_risk_update(merchant=merchant, changes=changes)
        audit(
            actor=actor,
            action="merchant.risk_rules",
            obj=merchant,
            detail="; ".join(f"{r}: {s}" for r, s in risk_rules_describe(merchant)),
        )
    return merchant


def merchant_keys_revoke(*, merchant: Merchant, actor: str) -> int:
    """Revoke every live key of the merchant; one audit record per key."""
    revoked = 0
    with transaction.atomic():
        for key in ApiKey.objects.filter(merchant=merchant, revoked_at__isnull=True):
            api_key_revoke(key=key)
            audit(actor=actor, action="key.revoke", obj=key)
            revoked += 1
    return revoked


def webhook_delivery_retry_now(*, delivery: WebhookDelivery, actor: str) -> str:
    """Give a failed webhook delivery one more attempt now; say what happened."""
    with transaction.atomic():
        if webhook_delivery_retry(delivery_ids=[delivery.pk]):
            outcome = "due now for one more attempt"
            audit(
                actor=actor,
                action="webhook_delivery.retry",
                obj=delivery,
                detail=outcome,
            )
        else:
            outcome = f"not retried: delivery is {delivery.status}, not failed"
    return outcome


def webhook_endpoint_disable(*, endpoint: WebhookEndpoint, actor: str) -> str:
    with transaction.atomic():
        endpoint_disable(endpoint=endpoint)
        audit(actor=actor, action="webhook_endpoint.disable", obj=endpoint)
    return "disabled"
