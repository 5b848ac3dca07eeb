import threading

import pytest
from django.db import IntegrityError

from gateways.base import ChargeRequest, RefundRequest
from gateways.exceptions import RetryableSafe
from gateways.models import SandboxCharge
from gateways.services import charge_records, get_gateway
from tests.gateways.conftest import (
    CARD_DECLINED,
    INSUFFICIENT_FUNDS,
    OTHER_VALID,
    PROCESSING_ERROR,
    VISA,
    Card,
)

pytestmark = pytest.mark.django_db


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
        ("4242424242424241", "declined", "incorrect_number"),
    ],
)
def test_sandbox_test_card_outcome(pan, status, code):
    result = get_gateway("sandbox").charge(_req("k1", pan))
    assert (result.status, result.decline_code) == (status, code)
    assert result.reference.startswith("ch_sbx_")


def test_sandbox_processing_error_card_raises_retryable_safe_and_records_nothing():
    with pytest.raises(RetryableSafe) as info:
        get_gateway("sandbox").charge(_req("k1", PROCESSING_ERROR))
    assert info.value.code == "processing_error"
    assert not SandboxCharge.objects.exists()


def test_sandbox_same_key_twice_records_one_charge():
    gateway = get_gateway("sandbox")
    first = gateway.charge(_req("k1"))
    second = gateway.charge(_req("k1"))
    assert first == second
    assert SandboxCharge.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_sandbox_concurrent_identical_charges_record_one_charge():
    gateway = get_gateway("sandbox")
    results, barrier = [], threading.Barrier(8)

    def charge():
        barrier.wait()
        results.append(gateway.charge(_req("k-race")))

    threads = [threading.Thread(target=charge) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.reference for r in results}) == 1
    assert SandboxCharge.objects.filter(idempotency_key="k-race").count() == 1


def test_database_refuses_a_second_sandbox_charge_with_the_same_key():
    get_gateway("sandbox").charge(_req("k1"))
    row = SandboxCharge.objects.get()
    with pytest.raises(IntegrityError):
        SandboxCharge.objects.create(
            idempotency_key="k1", reference="ch_other", payment_id="p",
            merchant_id="m", amount=1, currency="usd", status="succeeded",
        )  # fmt: skip
    assert row.reference != "ch_other"


def test_sandbox_inquiry_finds_charge_by_key_and_none_for_unknown_key():
    gateway = get_gateway("sandbox")
    charged = gateway.charge(_req("k1"))
    assert gateway.inquire("k1") == charged
    assert gateway.inquire("never-sent") is None


def test_sandbox_refund_is_idempotent_and_refuses_over_refund():
    gateway = get_gateway("sandbox")
    charged = gateway.charge(_req("k1", amount=1000))
    first = gateway.refund(RefundRequest("re_1", charged.reference, 600, "usd"))
    again = gateway.refund(RefundRequest("re_1", charged.reference, 600, "usd"))
    over = gateway.refund(RefundRequest("re_2", charged.reference, 600, "usd"))
    assert first == again and first.status == "succeeded"
    assert over.status == "failed"


def test_charge_records_lists_sandbox_charges_and_refunds():
    gateway = get_gateway("sandbox")
    charged = gateway.charge(_req("k1"))
    gateway.charge(_req("k2", CARD_DECLINED))
    gateway.refund(RefundRequest("re_1", charged.reference, 100, "usd"))
    records = charge_records("sandbox")
    assert [(r.kind, r.idempotency_key, r.status) for r in records] == [
        ("charge", "k1", "succeeded"),
        ("charge", "k2", "declined"),
        ("refund", "re_1", "succeeded"),
    ]
    assert records[2].payment_id == "pay_k1"
    assert all(r.gateway == "sandbox" for r in records)
