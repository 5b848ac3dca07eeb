import pytest

from gateways.base import ChargeRequest
from gateways.exceptions import RetryableSafe, UnknownGateway, UnknownOutcome
from gateways.services import (
    charge_records,
    charge_with_failover,
    get_gateway,
    refund,
    reset,
    resolve_charge,
)
from tests.gateways.conftest import (
    CARD_DECLINED,
    INSUFFICIENT_FUNDS,
    PROCESSING_ERROR,
    VISA,
    Card,
    free_port,
)
from tests.gateways.fake_stripe import FakeStripe


@pytest.fixture
def fake_stripe(gateway_settings):
    fake = FakeStripe()
    gateway_settings.STRIPE_API_KEY = "sk_test_fake"
    gateway_settings.STRIPE_API_BASE = fake.url
    reset()
    yield fake
    fake.stop()


def _req(key: str, pan: str = VISA) -> ChargeRequest:
    return ChargeRequest(key, f"pay_{key}", "mer_1", 1500, "usd", Card(pan))


def test_stripe_charge_succeeds_with_the_idempotency_key(fake_stripe):
    gateway = get_gateway("stripe")
    first = gateway.charge(_req("k1"))
    assert first.status == "succeeded" and first.reference.startswith("pi_")
    assert (first.amount, first.currency) == (1500, "usd")
    assert gateway.charge(_req("k1")) == first
    assert len(fake_stripe.intents) == 1


@pytest.mark.parametrize(
    ("pan", "code"),
    [(CARD_DECLINED, "card_declined"), (INSUFFICIENT_FUNDS, "insufficient_funds")],
)
def test_stripe_card_error_is_a_declined_result(fake_stripe, pan, code):
    result = get_gateway("stripe").charge(_req("k1", pan))
    assert (result.status, result.decline_code) == ("declined", code)
    assert result.reference.startswith("pi_")


def test_stripe_500_is_unknown_outcome(fake_stripe):
    with pytest.raises(UnknownOutcome):
        get_gateway("stripe").charge(_req("k1", PROCESSING_ERROR))


def test_stripe_inquiry_finds_the_intent_by_key_or_none(fake_stripe):
    gateway = get_gateway("stripe")
    charged = gateway.charge(_req("pay_1:stripe"))
    assert gateway.inquire("pay_1:stripe") == charged
    assert gateway.inquire("pay_2:stripe") is None
    gateway.charge(_req("pay_3:stripe", CARD_DECLINED))
    declined = gateway.inquire("pay_3:stripe")
    assert (declined.status, declined.decline_code) == ("declined", "card_declined")
    assert resolve_charge(payment_id="pay_1", primary="stripe").reference == (
        charged.reference
    )


def test_stripe_through_the_failover_policy_and_refund(fake_stripe):
    outcome = charge_with_failover(
        payment_id="pay_1", merchant_id="m", amount=1500, currency="usd",
        card=Card(VISA), primary="stripe",
    )  # fmt: skip
    result = refund(
        gateway="stripe", charge_reference=outcome.reference, refund_id="re_1",
        amount=500, currency="usd",
    )  # fmt: skip
    assert (outcome.gateway, result.status) == ("stripe", "succeeded")
    assert [r.idempotency_key for r in charge_records("stripe")] == ["pay_1:stripe"]


def test_stripe_unreachable_is_retryable_safe(gateway_settings):
    gateway_settings.STRIPE_API_KEY = "sk_test_fake"
    gateway_settings.STRIPE_API_BASE = f"http://127.0.0.1:{free_port()}"
    reset()
    with pytest.raises(RetryableSafe) as info:
        get_gateway("stripe").charge(_req("k1"))
    assert VISA not in f"{info.value!s}{info.value.__cause__!s}"


def test_stripe_without_an_api_key_is_not_configured(gateway_settings):
    gateway_settings.STRIPE_API_KEY = ""
    reset()
    with pytest.raises(UnknownGateway):
        get_gateway("stripe")
