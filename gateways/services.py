"""Charging through gateways: registry, retry/failover policy, batches, inquiry.

The rule that keeps money safe: fail over to another gateway only when the
first one provably did not charge (RetryableSafe). An unknown outcome is
resolved by a status inquiry on the same gateway, never by charging elsewhere.
"""

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from gateways import breakers, conf
from gateways.adapters.sandbox import SandboxGateway
from gateways.adapters.simulator import SimulatorGateway
from gateways.base import ChargeRequest, ChargeResult, Gateway, RefundRequest
from gateways.base import RefundResult as RefundResult
from gateways.exceptions import (
    CircuitOpen,
    GatewayError,
    RequestRejected,
    RetryableSafe,
    UnknownGateway,
    UnknownOutcome,
)
from gateways.policy import backoff_seconds

logger = logging.getLogger(__name__)

breaker_state = breakers.breaker_state


@dataclass(frozen=True, slots=True)
class ChargeOutcome:
    gateway: str
    status: Literal["succeeded", "declined"]
    reference: str
    decline_code: str = ""


@dataclass(frozen=True, slots=True)
class ChargeItem:
    payment_id: str
    merchant_id: str
    amount: int
    currency: str
    card: Any
    primary: str
    secondary: str = ""


@dataclass(frozen=True, slots=True)
class GatewayRecord:
    gateway: str
    kind: Literal["charge", "refund"]
    idempotency_key: str
    reference: str
    payment_id: str
    amount: int
    currency: str
    status: str


# --- registry -------------------------------------------------------------------
_lock = threading.Lock()
_gateways: dict[str, Gateway] = {}
_executor: ThreadPoolExecutor | None = None


def _build(name: str) -> Gateway:
    connect = conf.get("GATEWAY_CONNECT_TIMEOUT")
    read = conf.get("GATEWAY_READ_TIMEOUT")
    if name == "sandbox":
        return SandboxGateway()
    if name == "stripe":
        # deferred: the stripe SDK is large and slow to import; only a process
        # configured for Stripe (STRIPE_API_KEY) pays for it.
        from gateways.adapters.stripe import StripeGateway

        api_key = conf.get("STRIPE_API_KEY")
        if not api_key:
            raise UnknownGateway("Gateway 'stripe' needs STRIPE_API_KEY.")
        return StripeGateway(
            api_key=api_key,
            api_base=conf.get("STRIPE_API_BASE"),
            connect_timeout=connect,
            read_timeout=read,
        )
    urls = conf.simulator_urls()
    if name in urls:
        return SimulatorGateway(
            name,
            urls[name],
            connect_timeout=connect,
            read_timeout=read,
            pool_size=conf.get("GATEWAY_BULKHEAD_SIZE"),
        )
    raise UnknownGateway(f"No gateway named {name!r}.")


def gateway_names() -> list[str]:
    """Every configured gateway: sandbox, the simulators, stripe if it has a key."""
    names = ["sandbox", *conf.simulator_urls()]
    if conf.get("STRIPE_API_KEY"):
        names.append("stripe")
    return names


def get_gateway(name: str) -> Gateway:
    gateway = _gateways.get(name)
    if gateway is None:
        with _lock:
            if name not in _gateways:
                _gateways[name] = _build(name)
            gateway = _gateways[name]
    return gateway


def register_gateway(name: str, gateway: Gateway) -> None:
    """Install an adapter under ``name`` (a new processor, or a test double)."""
    with _lock:
        _gateways[name] = gateway


def reset() -> None:
    """Drop adapters, breakers, bulkheads and the pool; settings are re-read."""
    global _executor, _lock
    for gateway in list(_gateways.values()):
        close = getattr(gateway, "close", None)
        if close is not None:
            close()
    _gateways.clear()
    conf.clear()
    if _executor is not None:
        _executor.shutdown(wait=False)
        _executor = None
    breakers.reset()


def _after_fork_in_child() -> None:
    # Threads, pooled sockets and held locks do not survive fork sanely.
    global _executor, _lock
    _lock = threading.Lock()
    breakers._lock = threading.Lock()
    _gateways.clear()
    _executor = None
    breakers.reset()


os.register_at_fork(after_in_child=_after_fork_in_child)


def idempotency_key_for(payment_id: str, gateway_name: str) -> str:
    """One key per payment per gateway: retries on a gateway reuse it."""
    return f"{payment_id}:{gateway_name}"


def _sleep_before(attempt: int) -> None:
    if attempt:
        time.sleep(backoff_seconds(attempt - 1))


# --- calls ------------------------------------------------------------------------
_UNKNOWN = object()


def _inquire(name: str, key: str) -> ChargeResult | object | None:
    """Inquiry with retries; bypasses the breaker (reads are how we recover)."""
    gateway = get_gateway(name)
    for attempt in range(max(1, conf.get("GATEWAY_INQUIRY_TRIES"))):
        _sleep_before(attempt)
        try:
            with breakers.bulkhead(name):
                return gateway.inquire(key)
        except GatewayError as exc:
            logger.info("inquiry on %s failed: %s", name, exc.message)
    return _UNKNOWN


def _outcome(name: str, result: ChargeResult) -> ChargeOutcome:
    return ChargeOutcome(
        gateway=name,
        status=result.status,
        reference=result.reference,
        decline_code=result.decline_code,
    )


def _charge_on(name: str, req: ChargeRequest) -> ChargeOutcome:
    """Charge on one gateway: retry what is provably uncharged, resolve unknowns."""
    gateway = get_gateway(name)

    def attempt_call() -> ChargeResult:
        with breakers.bulkhead(name):
            return gateway.charge(req)

    last: RetryableSafe | None = None
    # Once a request may have been sent without an answer, an empty inquiry is
    # not proof: the request may still arrive. Retries stay on this gateway
    # (same key, so at most one charge), and it is never failed over.
    sent_unanswered = False
    for attempt in range(max(1, conf.get("GATEWAY_RETRY_TRIES"))):
        _sleep_before(attempt)
        try:
            return _outcome(name, breakers.guarded(name, attempt_call))
        except (CircuitOpen, RequestRejected) as exc:
            if sent_unanswered:
                raise _left_for_inquiry(name, req) from exc
            raise
        except RetryableSafe as exc:
            last = exc
        except UnknownOutcome:
            found = _inquire(name, req.idempotency_key)
            if found is _UNKNOWN:
                raise UnknownOutcome(
                    f"{name}: outcome of {req.payment_id} unknown after inquiry"
                ) from None
            if found is not None:
                return _outcome(name, found)
            sent_unanswered = True
            last = RetryableSafe(f"{name}: inquiry found no charge after a timeout")
    if sent_unanswered:
        raise _left_for_inquiry(name, req)
    assert last is not None
    raise last


def _left_for_inquiry(name: str, req: ChargeRequest) -> UnknownOutcome:
    return UnknownOutcome(
        f"{name}: {req.payment_id} had a request without an answer; "
        "left for a later inquiry, never charged elsewhere"
    )


def charge_with_failover(
    *,
    payment_id: str,
    merchant_id: str,
    amount: int,
    currency: str,
    card: Any,
    primary: str,
    secondary: str = "",
) -> ChargeOutcome:
    """Charge on ``primary``; move to ``secondary`` only if primary provably did not.

    Raises UnknownOutcome (leave the payment processing; resolve later by
    inquiry) or RetryableSafe when every gateway is exhausted (fail it).
    """
    item = ChargeItem(
        payment_id=payment_id, merchant_id=merchant_id, amount=amount,
        currency=currency, card=card, primary=primary, secondary=secondary,
    )  # fmt: skip
    [result] = charge_many([item])
    if isinstance(result, Exception):
        raise result
    return result


def resolve_charge(
    *, payment_id: str, primary: str, secondary: str = "", sent_to: str = ""
) -> ChargeOutcome | None:
    """Find the charge for a payment on its route (and on ``sent_to``, the
    gateway it was last sent to, should the route have changed since); None =
    none found anywhere, which is no proof that none will be: a request sent
    without an answer may still land (``resubmit``).

    Raises UnknownOutcome when one of those gateways cannot answer.
    """
    found: list[ChargeOutcome] = []
    names = dict.fromkeys(n for n in (sent_to, primary, secondary) if n)
    for name in names:
        try:
            get_gateway(name)
        except UnknownGateway:
            continue  # never configured, so never charged there
        result = _inquire(name, idempotency_key_for(payment_id, name))
        if result is _UNKNOWN:
            raise UnknownOutcome(f"{name}: inquiry for {payment_id} failed")
        if result is not None:
            found.append(_outcome(name, result))
    for outcome in found:
        if outcome.status == "succeeded":
            return outcome
    return found[0] if found else None


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        with _lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(
                    max_workers=conf.get("GATEWAY_POOL_WORKERS"),
                    thread_name_prefix="gateway-charge",
                )
    return _executor


def _charge_request(item: ChargeItem, name: str) -> ChargeRequest:
    return ChargeRequest(
        idempotency_key=idempotency_key_for(item.payment_id, name),
        payment_id=item.payment_id,
        merchant_id=item.merchant_id,
        amount=item.amount,
        currency=item.currency,
        card=item.card,
    )


def _charge_item_on(item: ChargeItem, name: str) -> ChargeOutcome | Exception:
    try:
        return _charge_on(name, _charge_request(item, name))
    except Exception as exc:  # each payment's own verdict; the batch goes on
        return exc


def _run_all(
    items: Sequence[Any],
    call: Callable[[Any], ChargeOutcome | Exception],
    *,
    gateways: int,
) -> list[ChargeOutcome | Exception]:
    """``call`` on every item concurrently; results in input order.

    Up to GATEWAY_POOL_WORKERS pool threads each take the next item until none
    is left: one future per thread rather than per charge (a future and its
    hand-off per charge cost more CPU than the HTTP call itself).
    """
    results: list[ChargeOutcome | Exception | None] = [None] * len(items)
    if not items:
        return []
    indexes = iter(range(len(items)))
    taking = threading.Lock()

    def drain() -> None:
        while True:
            with taking:
                i = next(indexes, None)
            if i is None:
                return
            results[i] = call(items[i])

    # No more runners than the bulkheads of the ``gateways`` called admit: the
    # rest would only queue on the semaphore, and every release would wake one.
    runners = min(
        len(items),
        max(1, conf.get("GATEWAY_POOL_WORKERS")),
        max(1, conf.get("GATEWAY_BULKHEAD_SIZE")) * max(1, gateways),
    )
    for future in [_pool().submit(drain) for _ in range(runners)]:
        future.result()
    return results  # type: ignore[return-value] (every slot is filled)


def charge_many(
    items: list[ChargeItem],
    *,
    before_failover: Callable[[list[tuple[str, str]]], None] | None = None,
) -> list[ChargeOutcome | Exception]:
    """Charge a batch concurrently; results in input order, errors as values.

    Every item goes to its primary first. The items the primary provably did
    not charge (RetryableSafe) go to their secondary in a second round, after
    ``before_failover`` has been given (payment_id, secondary) for each, from
    the calling thread: the caller records where a charge is sent before it is
    sent, so that a charge left without an answer is only ever re-submitted
    there (``resubmit_many``).
    """
    results = _run_all(
        items,
        lambda item: _charge_item_on(item, item.primary),
        gateways=len({item.primary for item in items}),
    )
    moving = [
        i
        for i, (item, result) in enumerate(zip(items, results, strict=True))
        if isinstance(result, RetryableSafe)
        and item.secondary
        and item.secondary != item.primary
    ]
    staying = set(range(len(items))) - set(moving)
    for i in staying:
        if isinstance(results[i], RetryableSafe):
            results[i] = _not_charged([(items[i].primary, results[i])])
    if not moving:
        return results
    for i in moving:
        logger.warning(
            "payment %s not charged on %s (%s)",
            items[i].payment_id,
            items[i].primary,
            results[i].code,  # type: ignore[union-attr] (a RetryableSafe)
        )
    if before_failover is not None:
        before_failover([(items[i].payment_id, items[i].secondary) for i in moving])
    second = _run_all(
        [items[i] for i in moving],
        lambda item: _charge_item_on(item, item.secondary),
        gateways=len({items[i].secondary for i in moving}),
    )
    for i, result in zip(moving, second, strict=True):
        if isinstance(result, RetryableSafe):
            item = items[i]
            result = _not_charged(
                [(item.primary, results[i]), (item.secondary, result)]
            )
        results[i] = result
    return results


def _not_charged(failures: list[tuple[str, Any]]) -> RetryableSafe:
    """One verdict for a payment no gateway on its route charged."""
    reasons = "; ".join(f"{name}: {exc.message}" for name, exc in failures)
    return RetryableSafe(f"Not charged; {reasons}")


def resubmit(item: ChargeItem, gateway: str) -> ChargeOutcome:
    """Re-submit a charge that may have been sent to ``gateway`` without an
    answer: to that gateway only, under the same idempotency key, never failed
    over. The gateway finds the first request's charge if there was one.

    Raises UnknownOutcome when this attempt gets no answer either, including an
    open breaker or a "not processed" reply: the first request may still land,
    so the payment waits for a later sweep; it is never charged elsewhere.
    """
    try:
        return _charge_on(gateway, _charge_request(item, gateway))
    except RetryableSafe as exc:
        raise UnknownOutcome(
            f"{gateway}: {item.payment_id} not re-submitted ({exc.code}); "
            "left for a later sweep, never charged elsewhere"
        ) from exc


def resubmit_many(
    items: list[tuple[ChargeItem, str]],
) -> list[ChargeOutcome | Exception]:
    """``resubmit`` for each (item, gateway), concurrently; errors as values."""

    def call(pair: tuple[ChargeItem, str]) -> ChargeOutcome | Exception:
        try:
            return resubmit(*pair)
        except Exception as exc:
            return exc

    return _run_all(items, call, gateways=len({gateway for _, gateway in items}))


def refund(
    *, gateway: str, charge_reference: str, refund_id: str, amount: int, currency: str
) -> RefundResult:
    """Refund on the charge's gateway (keyed by ``refund_id``; no failover).

    Raises RetryableSafe (not refunded) or UnknownOutcome (retry later, same key).
    """
    adapter = get_gateway(gateway)
    req = RefundRequest(
        idempotency_key=refund_id,
        charge_reference=charge_reference,
        amount=amount,
        currency=currency,
    )

    def attempt_call() -> RefundResult:
        with breakers.bulkhead(gateway):
            return adapter.refund(req)

    last: RetryableSafe | None = None
    for attempt in range(max(1, conf.get("GATEWAY_RETRY_TRIES"))):
        _sleep_before(attempt)
        try:
            return breakers.guarded(gateway, attempt_call)
        except (CircuitOpen, RequestRejected):
            raise
        except RetryableSafe as exc:
            last = exc
    assert last is not None
    raise last


def charge_records(
    gateway_name: str, since: datetime | None = None
) -> list[GatewayRecord]:
    """The gateway's own log of charges and refunds, for reconciliation."""
    adapter = get_gateway(gateway_name)
    records = getattr(adapter, "records", None)
    if records is None:
        return []
    return [GatewayRecord(gateway=gateway_name, **r) for r in records(since)]
