"""Stripe through the official SDK: one-step PaymentIntent (confirm=True).

Inquiry uses the Search API on ``metadata['surge_idempotency_key']``. Stripe
documents search as eventually consistent (new objects appear within about a
minute), so a None shortly after a lost response is weaker proof than the
simulator's 404; retries on Stripe reuse the idempotency key and are safe.
"""

from datetime import datetime

import httpx
import stripe

from gateways.base import ChargeRequest, ChargeResult, RefundRequest, RefundResult
from gateways.error_codes import DeclineCode, ErrorCode
from gateways.exceptions import RequestRejected, RetryableSafe, UnknownOutcome

KEY_FIELD = "surge_idempotency_key"
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def _plain(obj) -> dict:
    """StripeObject is not a dict in SDK v16 (no ``.get``); fakes and JSON are."""
    return obj.to_dict() if hasattr(obj, "to_dict") else obj


def _intent_result(intent) -> ChargeResult | None:
    intent = _plain(intent)
    status = intent["status"]
    base = {
        "reference": intent["id"],
        "amount": intent["amount"],
        "currency": intent["currency"],
    }
    if status == "succeeded":
        return ChargeResult(status="succeeded", **base)
    if status == "requires_confirmation":
        return None  # created but never attempted: nothing was charged
    if status == "processing":
        raise UnknownOutcome("stripe: payment intent still processing")
    error = intent.get("last_payment_error") or {}
    code = {
        "requires_action": "authentication_required",
        "canceled": "canceled",
    }.get(status) or (
        error.get("decline_code") or error.get("code") or DeclineCode.CARD_DECLINED
    )
    return ChargeResult(status="declined", decline_code=code, **base)


def _classify(exc: stripe.StripeError, *, during: str) -> Exception:
    """Map an SDK error to ours. Stripe's own message is never copied."""
    name = type(exc).__name__
    if isinstance(exc, stripe.APIConnectionError):
        if isinstance(exc.__cause__, _NOT_SENT):
            return RetryableSafe(
                f"stripe {during}: not sent ({name})", code=ErrorCode.NOT_SENT
            )
        return UnknownOutcome(f"stripe {during}: no answer after send ({name})")
    if isinstance(exc, stripe.RateLimitError):
        return RetryableSafe(
            f"stripe {during}: rate limited", code=ErrorCode.RATE_LIMITED
        )
    if isinstance(
        exc,
        stripe.InvalidRequestError
        | stripe.AuthenticationError
        | stripe.PermissionError
        | stripe.IdempotencyError,
    ):
        return RequestRejected(
            f"stripe {during}: rejected ({name}, {exc.code or 'no code'})",
            code=exc.code or ErrorCode.PROCESSOR_REJECTED,
        )
    return UnknownOutcome(f"stripe {during}: {name} (http {exc.http_status})")


class StripeGateway:
    name = "stripe"

    def __init__(
        self,
        *,
        api_key: str,
        api_base: str,
        connect_timeout: float,
        read_timeout: float,
    ):
        timeout = httpx.Timeout(
            connect=connect_timeout, read=read_timeout, write=read_timeout, pool=5.0
        )
        self.client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base.rstrip("/")},
            max_network_retries=0,  # our retry policy decides
            http_client=stripe.HTTPXClient(timeout=timeout, allow_sync_methods=True),
        )

    def charge(self, req: ChargeRequest) -> ChargeResult:
        card = req.card
        params = {
            "amount": req.amount,
            "currency": req.currency,
            "confirm": True,
            "payment_method_types": ["card"],
            "payment_method_data": {
                "type": "card",
                "card": {
                    "number": card.pan,
                    "exp_month": card.exp_month,
                    "exp_year": card.exp_year,
                },
            },
            "metadata": {
                KEY_FIELD: req.idempotency_key,
                "payment_id": req.payment_id,
                "merchant_id": req.merchant_id,
            },
        }
        try:
            intent = self.client.v1.payment_intents.create(
                params=params, options={"idempotency_key": req.idempotency_key}
            )
        except stripe.CardError as exc:
            err = exc.error
            intent = _plain(getattr(err, "payment_intent", None) or {}) if err else {}
            code = (err and (err.decline_code or err.code)) or exc.code
            return ChargeResult(
                status="declined",
                reference=intent["id"] if intent else "",
                decline_code=code or DeclineCode.CARD_DECLINED,
                amount=req.amount,
                currency=req.currency,
            )
        except stripe.StripeError as exc:
            raise _classify(exc, during="charge") from exc
        result = _intent_result(intent)
        if result is None:
            raise UnknownOutcome("stripe charge: intent left unconfirmed")
        return result

    def inquire(self, idempotency_key: str) -> ChargeResult | None:
        query = f"metadata['{KEY_FIELD}']:'{idempotency_key}'"
        try:
            found = self.client.v1.payment_intents.search(
                params={"query": query, "limit": 10}
            )
        except stripe.StripeError as exc:
            raise _classify(exc, during="inquiry") from exc
        results = [_intent_result(i) for i in found.data]
        results = [r for r in results if r is not None]
        for result in results:
            if result.status == "succeeded":
                return result
        return results[0] if results else None

    def refund(self, req: RefundRequest) -> RefundResult:
        try:
            refund = self.client.v1.refunds.create(
                params={"payment_intent": req.charge_reference, "amount": req.amount},
                options={"idempotency_key": req.idempotency_key},
            )
        except stripe.StripeError as exc:
            raise _classify(exc, during="refund") from exc
        ok = refund["status"] in ("succeeded", "pending")
        return RefundResult(
            status="succeeded" if ok else "failed", reference=refund["id"]
        )

    def records(self, since: datetime | None = None) -> list[dict]:
        params: dict = {"limit": 100}
        if since is not None:
            params["created"] = {"gte": int(since.timestamp())}
        try:
            page = self.client.v1.payment_intents.list(params=params)
            intents = [_plain(i) for i in page.auto_paging_iter()]
        except stripe.StripeError as exc:
            raise _classify(exc, during="records") from exc
        return [
            {
                "kind": "charge",
                "idempotency_key": (i.get("metadata") or {}).get(KEY_FIELD, ""),
                "reference": i["id"],
                "payment_id": (i.get("metadata") or {}).get("payment_id", ""),
                "amount": i["amount"],
                "currency": i["currency"],
                "status": "succeeded" if i["status"] == "succeeded" else "declined",
            }
            for i in intents
        ]
