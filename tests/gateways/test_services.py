import logging
import random
import time

import pytest

from gateways import breakers, services
from gateways.base import ChargeResult
from gateways.exceptions import (
    CircuitOpen,
    RetryableSafe,
    UnknownGateway,
    UnknownOutcome,
)
from gateways.policy import backoff_seconds
from gateways.services import (
    ChargeItem,
    breaker_state,
    charge_many,
    charge_records,
    charge_with_failover,
    idempotency_key_for,
    resolve_charge,
)
from tests.gateways.conftest import (
    CARD_DECLINED,
    INSUFFICIENT_FUNDS,
    PROCESSING_ERROR,
    VISA,
    Card,
    control,
)


def _charge(payment_id: str, pan: str = VISA, **route):
    route = route or {"primary": "simulator", "secondary": "simulator_b"}
    return charge_with_failover(
        payment_id=payment_id, merchant_id="mer_1", amount=1000, currency="usd",
        card=Card(pan), **route,
    )  # fmt: skip


class ScriptedGateway:
    """A processor double whose answers are scripted (for paths a real one
    cannot be made to take on demand, such as an inquiry that never answers)."""

    def __init__(self, name, charges=(), inquiries=()):
        self.name = name
        self.charges, self.inquiries = list(charges), list(inquiries)
        self.keys: list[str] = []

    @staticmethod
    def _next(script):
        step = script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    def charge(self, req):
        self.keys.append(req.idempotency_key)
        return self._next(self.charges)

    def inquire(self, key):
        return self._next(self.inquiries)

    def refund(self, req):
        raise NotImplementedError


OK = ChargeResult(status="succeeded", reference="ch_scripted", amount=1000,
                  currency="usd")  # fmt: skip


def test_idempotency_key_is_stable_per_payment_and_gateway():
    assert idempotency_key_for("pay_1", "simulator") == "pay_1:simulator"
    assert idempotency_key_for("pay_1", "simulator") != idempotency_key_for(
        "pay_1", "simulator_b"
    )


def test_success_on_primary_never_touches_secondary(sim, sim_b):
    outcome = _charge("pay_1")
    assert (outcome.gateway, outcome.status) == ("simulator", "succeeded")
    assert charge_records("simulator_b") == []


def test_decline_is_a_result_and_never_fails_over(sim, sim_b):
    outcome = _charge("pay_1", CARD_DECLINED)
    assert (outcome.gateway, outcome.status, outcome.decline_code) == (
        "simulator", "declined", "card_declined",
    )  # fmt: skip
    assert charge_records("simulator_b") == []


def test_retryable_errors_are_retried_on_the_same_gateway_with_the_same_key(sim_b):
    flaky = ScriptedGateway(
        "flaky", charges=[RetryableSafe("503"), RetryableSafe("503"), OK]
    )
    services.register_gateway("flaky", flaky)
    outcome = _charge("pay_1", primary="flaky", secondary="simulator_b")
    assert outcome.gateway == "flaky"
    assert flaky.keys == ["pay_1:flaky"] * 3


def test_timeout_after_send_is_resolved_by_inquiry_without_failover(sim, sim_b):
    control(sim, timeout_rate=1.0, timeout_delay_ms=2000)
    outcome = _charge("pay_1")
    assert (outcome.gateway, outcome.status) == ("simulator", "succeeded")
    assert len(charge_records("simulator")) == 1
    assert charge_records("simulator_b") == []


def test_unresolvable_unknown_outcome_raises_and_never_charges_elsewhere(sim_b):
    lost = UnknownOutcome("read timeout")
    limbo = ScriptedGateway("limbo", charges=[lost], inquiries=[lost] * 3)
    services.register_gateway("limbo", limbo)
    with pytest.raises(UnknownOutcome):
        _charge("pay_1", primary="limbo", secondary="simulator_b")
    assert charge_records("simulator_b") == []


def test_after_an_unanswered_request_an_empty_inquiry_allows_retry_not_failover(
    sim_b,
):
    lost = UnknownOutcome("read timeout")
    gateway = ScriptedGateway(
        "ghost", charges=[lost, RetryableSafe("x"), RetryableSafe("x")],
        inquiries=[None],
    )  # fmt: skip
    services.register_gateway("ghost", gateway)
    with pytest.raises(UnknownOutcome):
        _charge("pay_1", primary="ghost", secondary="simulator_b")
    assert charge_records("simulator_b") == []  # never charged elsewhere


def test_after_an_unanswered_request_a_retry_on_the_same_key_can_succeed(sim_b):
    lost = UnknownOutcome("read timeout")
    ok = ChargeResult(status="succeeded", reference="ch_1", amount=100, currency="usd")
    gateway = ScriptedGateway("ghost", charges=[lost, ok], inquiries=[None])
    services.register_gateway("ghost", gateway)
    outcome = _charge("pay_1", primary="ghost", secondary="simulator_b")
    assert (outcome.gateway, outcome.reference) == ("ghost", "ch_1")


def test_outage_opens_breaker_in_redis_and_payments_fail_over(sim, sim_b):
    control(sim, outage=True)
    first = _charge("pay_1")
    assert first.gateway == "simulator_b"
    assert breaker_state("simulator") == "open"
    redis = breakers.redis_client()
    assert redis.get("surge:gateway:simulator:pybreaker:state") == b"open"
    sent = sim.simulator.stats["requests"]
    second = _charge("pay_2")
    assert second.gateway == "simulator_b"
    assert sim.simulator.stats["requests"] == sent  # the open circuit sent nothing


def test_open_breaker_is_seen_by_a_fresh_process_state(sim, sim_b):
    control(sim, outage=True)
    _charge("pay_1")
    services.reset()  # a new process: new breaker objects, same Redis
    with pytest.raises(CircuitOpen):
        services.breakers.guarded("simulator", lambda: None)
    assert breaker_state("simulator") == "open"


def test_breaker_half_opens_after_reset_timeout_and_closes_on_recovery(
    sim, sim_b, caplog
):
    caplog.set_level(logging.WARNING, logger="gateways.breakers")
    control(sim, outage=True)
    _charge("pay_1")
    assert breaker_state("simulator") == "open"
    control(sim, outage=False)
    time.sleep(1.6)  # reset_timeout 1.5 s
    outcome = _charge("pay_2")
    assert outcome.gateway == "simulator"
    assert breaker_state("simulator") == "closed"
    assert "breaker simulator: open -> half-open" in caplog.text
    assert "breaker simulator: half-open -> closed" in caplog.text


def test_half_open_trial_failure_reopens_the_breaker(sim, sim_b):
    control(sim, outage=True)
    _charge("pay_1")
    time.sleep(1.6)
    assert _charge("pay_2").gateway == "simulator_b"
    assert breaker_state("simulator") == "open"


def test_declines_do_not_trip_the_breaker(sim, sim_b):
    for i in range(8):
        pan = CARD_DECLINED if i % 2 else INSUFFICIENT_FUNDS
        assert _charge(f"pay_{i}", pan).gateway == "simulator"
    assert breaker_state("simulator") == "closed"
    assert breakers.breaker("simulator").fail_counter == 0


def test_processing_error_everywhere_raises_retryable_safe(sim, sim_b):
    with pytest.raises(RetryableSafe) as info:
        _charge("pay_1", PROCESSING_ERROR)
    assert "simulator" in info.value.message and "simulator_b" in info.value.message


def test_unknown_gateway_is_retryable_safe_not_limbo(sim):
    with pytest.raises(UnknownGateway):
        services.get_gateway("nope")
    assert issubclass(UnknownGateway, RetryableSafe)
    assert _charge("pay_1", primary="nope", secondary="simulator").gateway == (
        "simulator"
    )


def test_backoff_has_full_jitter_below_an_exponential_bound():
    rng = random.Random(7)
    for attempt in range(12):
        bound = min(1000, 50 * 2**attempt) / 1000
        samples = [
            backoff_seconds(attempt, base_ms=50, cap_ms=1000, rng=rng)
            for _ in range(300)
        ]
        assert all(0 <= s <= bound for s in samples)
        assert len(set(samples)) > 250  # jittered, not a fixed delay
        assert max(samples) > bound * 0.8
    assert backoff_seconds(40, base_ms=50, cap_ms=1000) <= 1.0


def test_bulkhead_bounds_concurrent_calls_at_the_simulator(sim, gateway_settings):
    gateway_settings.GATEWAY_BULKHEAD_SIZE = 4
    services.reset()
    control(sim, latency_ms=[30, 30], reset_stats=True)
    items = [
        ChargeItem(payment_id=f"pay_{i}", merchant_id="m", amount=100,
                   currency="usd", card=Card(VISA), primary="simulator")
        for i in range(40)
    ]  # fmt: skip
    outcomes = charge_many(items)
    assert all(o.status == "succeeded" for o in outcomes)
    stats = control(sim)
    assert 2 <= stats["max_in_flight"] <= 4


def test_charge_many_returns_outcomes_and_errors_in_input_order(sim, sim_b):
    pans = [VISA, CARD_DECLINED, PROCESSING_ERROR, VISA]
    items = [
        ChargeItem(payment_id=f"pay_{i}", merchant_id="m", amount=100,
                   currency="usd", card=Card(pan), primary="simulator",
                   secondary="simulator_b")
        for i, pan in enumerate(pans)
    ]  # fmt: skip
    out = charge_many(items)
    assert isinstance(out[2], RetryableSafe)
    assert [out[i].status for i in (0, 1, 3)] == ["succeeded", "declined", "succeeded"]


def test_resolve_charge_finds_the_charge_on_the_route(sim, sim_b):
    control(sim, outage=True)
    charged = _charge("pay_1")
    control(sim, outage=False)
    found = resolve_charge(
        payment_id="pay_1", primary="simulator", secondary="simulator_b"
    )
    assert found == charged
    assert resolve_charge(payment_id="pay_2", primary="simulator") is None


def test_resolve_charge_raises_unknown_when_a_gateway_cannot_answer(sim):
    with pytest.raises(UnknownOutcome):
        resolve_charge(payment_id="pay_1", primary="simulator", secondary="dead")


def test_refund_service_is_idempotent_by_refund_id(sim):
    charged = _charge("pay_1", primary="simulator")
    refund = {
        "gateway": "simulator", "charge_reference": charged.reference,
        "refund_id": "re_1", "amount": 1000, "currency": "usd",
    }  # fmt: skip
    assert services.refund(**refund) == services.refund(**refund)
    assert [r.kind for r in charge_records("simulator")] == ["charge", "refund"]


def test_no_pan_in_logs_or_exception_text(sim, sim_b, caplog):
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    control(sim, timeout_rate=1.0, timeout_delay_ms=2000)
    _charge("pay_1")
    control(sim, timeout_rate=0.0, outage=True)
    for pan in (VISA, CARD_DECLINED, PROCESSING_ERROR):
        try:
            _charge(f"pay_{pan[-4:]}", pan)
        except Exception as exc:
            errors.append(exc)
    try:
        services.get_gateway("dead").charge(
            services.ChargeRequest("k", "p", "m", 100, "usd", Card(VISA))
        )
    except Exception as exc:
        errors.append(exc)
    assert len(errors) == 2
    chained = []
    for exc in errors:
        while exc is not None:
            chained.append(exc)
            exc = exc.__cause__ or exc.__context__
    text = caplog.text + "".join(f"{e!s}{e!r}" for e in chained)
    for pan in (VISA, CARD_DECLINED, PROCESSING_ERROR):
        assert pan not in text
    assert "4242" in repr(Card(VISA)) and VISA not in repr(Card(VISA))


def _item(payment_id: str, **route) -> ChargeItem:
    route = route or {"primary": "simulator", "secondary": "simulator_b"}
    return ChargeItem(
        payment_id=payment_id, merchant_id="mer_1", amount=1000, currency="usd",
        card=Card(VISA), **route,
    )  # fmt: skip


def test_failover_is_announced_before_the_secondary_is_charged(sim, sim_b):
    control(sim, outage=True)
    announced = []

    def before_failover(moves):
        # Nothing has reached the secondary yet when the caller is told.
        announced.append((moves, len(charge_records("simulator_b"))))

    [outcome, declined] = charge_many(
        [_item("pay_1"), _item("pay_2", primary="simulator")],
        before_failover=before_failover,
    )
    assert outcome.gateway == "simulator_b"
    assert isinstance(declined, RetryableSafe)  # no secondary: not charged
    assert announced == [([("pay_1", "simulator_b")], 0)]


def test_resubmit_goes_only_to_the_named_gateway_under_the_same_key(sim, sim_b):
    outcome = services.resubmit(_item("pay_1"), "simulator_b")
    assert outcome.gateway == "simulator_b"
    again = services.resubmit(_item("pay_1"), "simulator_b")
    assert again.reference == outcome.reference  # the first charge, found
    [record] = charge_records("simulator_b")
    assert record.idempotency_key == idempotency_key_for("pay_1", "simulator_b")
    assert charge_records("simulator") == []


def test_resubmit_with_the_breaker_open_waits_and_never_fails_over(sim, sim_b):
    control(sim, outage=True)
    _charge("pay_trip")  # opens the primary's breaker, fails over
    control(sim, outage=False)
    assert breaker_state("simulator") == "open"
    sent = sim.simulator.stats["requests"]
    with pytest.raises(UnknownOutcome):
        services.resubmit(_item("pay_1"), "simulator")
    assert sim.simulator.stats["requests"] == sent  # nothing sent
    assert [r.payment_id for r in charge_records("simulator_b")] == ["pay_trip"]


def test_resubmit_answered_not_processed_is_still_unknown(sim, sim_b):
    # A "not processed" reply to a re-submission does not prove the first
    # request will not land: it is left for a later sweep, not failed.
    with pytest.raises(UnknownOutcome):
        services.resubmit(_item("pay_1", primary="simulator"), "dead")
    assert services.resubmit_many([(_item("pay_2"), "simulator")])[0].gateway == (
        "simulator"
    )
