import subprocess
import sys
import time
from datetime import UTC, datetime

import httpx
import pytest

from gateways.base import ChargeRequest, RefundRequest
from gateways.exceptions import RequestRejected, RetryableSafe, UnknownOutcome
from gateways.services import charge_records, get_gateway
from gateways.simulator.server import SimulatorThread
from tests.gateways.conftest import (
    CARD_DECLINED,
    INSUFFICIENT_FUNDS,
    OTHER_VALID,
    PROCESSING_ERROR,
    VISA,
    Card,
    control,
    free_port,
)


def _req(key: str, pan: str = VISA, amount: int = 1000) -> ChargeRequest:
    return ChargeRequest(
        idempotency_key=key,
        payment_id=f"pay_{key}",
        merchant_id="mer_1",
        amount=amount,
        currency="usd",
        card=Card(pan),
    )


@pytest.mark.parametrize(
    ("pan", "status", "code"),
    [
        (VISA, "succeeded", ""),
        (OTHER_VALID, "succeeded", ""),
        (CARD_DECLINED, "declined", "card_declined"),
        (INSUFFICIENT_FUNDS, "declined", "insufficient_funds"),
    ],
)
def test_simulator_test_card_outcome(sim, pan, status, code):
    result = get_gateway("simulator").charge(_req("k1", pan))
    assert (result.status, result.decline_code) == (status, code)
    assert (result.amount, result.currency) == (1000, "usd")


def test_simulator_processing_error_card_is_retryable_safe_and_not_recorded(sim):
    with pytest.raises(RetryableSafe) as info:
        get_gateway("simulator").charge(_req("k1", PROCESSING_ERROR))
    assert info.value.code == "processing_error"
    assert charge_records("simulator") == []


def test_simulator_same_key_twice_is_one_charge_in_the_log(sim):
    gateway = get_gateway("simulator")
    assert gateway.charge(_req("k1")) == gateway.charge(_req("k1"))
    assert [r.idempotency_key for r in charge_records("simulator")] == ["k1"]


def test_simulator_same_key_with_another_amount_is_rejected(sim):
    gateway = get_gateway("simulator")
    gateway.charge(_req("k1", amount=1000))
    with pytest.raises(RequestRejected):
        gateway.charge(_req("k1", amount=2000))


def test_simulator_inquiry_returns_the_charge_or_none(sim):
    gateway = get_gateway("simulator")
    charged = gateway.charge(_req("pay_1:simulator"))
    assert gateway.inquire("pay_1:simulator") == charged
    assert gateway.inquire("pay_2:simulator") is None


def test_simulator_outage_is_retryable_safe(sim):
    control(sim, outage=True)
    with pytest.raises(RetryableSafe):
        get_gateway("simulator").charge(_req("k1"))
    assert sim.simulator.charges == {}


def test_simulator_injected_error_is_retryable_safe_and_not_recorded(sim):
    control(sim, error_rate=1.0)
    with pytest.raises(RetryableSafe):
        get_gateway("simulator").charge(_req("k1"))
    assert sim.simulator.charges == {}


def test_connection_refused_is_retryable_safe():
    with pytest.raises(RetryableSafe) as info:
        get_gateway("dead").charge(_req("k1"))
    assert info.value.code == "not_sent"


def test_refused_connections_outage_is_retryable_safe_then_recovers(sim):
    control(sim, outage="refuse", outage_seconds=0.5)
    time.sleep(0.2)
    gateway = get_gateway("simulator")
    with pytest.raises(RetryableSafe):
        gateway.charge(_req("k1"))
    time.sleep(0.6)
    assert gateway.charge(_req("k1")).status == "succeeded"


def test_timeout_after_send_is_unknown_outcome_but_the_charge_exists(sim):
    control(sim, timeout_rate=1.0, timeout_delay_ms=2000)
    gateway = get_gateway("simulator")
    with pytest.raises(UnknownOutcome):
        gateway.charge(_req("k1"))
    assert gateway.inquire("k1").status == "succeeded"


def test_simulator_refund_is_idempotent_and_logged(sim):
    gateway = get_gateway("simulator")
    charged = gateway.charge(_req("k1"))
    first = gateway.refund(RefundRequest("re_1", charged.reference, 400, "usd"))
    assert gateway.refund(RefundRequest("re_1", charged.reference, 400, "usd")) == first
    over = gateway.refund(RefundRequest("re_2", charged.reference, 700, "usd"))
    assert (first.status, over.status) == ("succeeded", "failed")
    kinds = [(r.kind, r.payment_id) for r in charge_records("simulator")]
    assert kinds == [("charge", "pay_k1"), ("refund", "pay_k1"), ("refund", "pay_k1")]


def test_charge_records_since_filters_older_charges(sim):
    gateway = get_gateway("simulator")
    gateway.charge(_req("old"))
    time.sleep(0.05)
    cutoff = datetime.now(UTC)
    gateway.charge(_req("new"))
    assert [r.idempotency_key for r in charge_records("simulator", cutoff)] == ["new"]


def test_simulator_log_file_keeps_charges_idempotent_across_restarts(tmp_path):
    log = tmp_path / "charges.jsonl"
    card = {"number": VISA, "exp_month": 12, "exp_year": 2099}
    body = {"amount": 500, "currency": "eur", "card": card}
    ids = []
    for _ in range(2):
        sim = SimulatorThread(log_file=str(log))
        r = httpx.post(
            f"{sim.url}/v1/charges", json=body, headers={"Idempotency-Key": "k1"}
        )
        ids.append(r.json()["id"])
        sim.stop()
    assert ids[0] == ids[1]
    assert len(log.read_text().splitlines()) == 1
    assert VISA not in log.read_text()


def test_run_gateway_simulator_command_serves_charges():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "run_gateway_simulator", "--port", str(port),
         "--latency-ms", "1-2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                httpx.get(f"{url}/health", timeout=0.5)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        card = {"number": CARD_DECLINED, "exp_month": 12, "exp_year": 2099}
        r = httpx.post(
            f"{url}/v1/charges",
            json={"amount": 100, "currency": "usd", "card": card},
            headers={"Idempotency-Key": "cmd-1"},
        )
        assert (r.status_code, r.json()["decline_code"]) == (200, "card_declined")
        assert httpx.get(f"{url}/_control").json()["latency_ms"] == [1, 2]
    finally:
        proc.terminate()
        proc.wait(10)
