import pytest

from ledger.services import post_refund, post_settlements
from tests.ledger.helpers import settlement

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.ledger.urls")]


def test_balance_shows_available_and_pending_per_currency_from_the_ledger(
    api, merchant
):
    post_settlements(
        [
            settlement("pay_1", merchant.id, amount=1000, fee=59),
            settlement("pay_2", merchant.id, amount=500, fee=0, currency="eur"),
            settlement("pay_3", "mer_other", amount=7000, fee=0),
        ]
    )
    post_refund(
        refund_id="re_1", payment_id="pay_1", merchant_id=merchant.id,
        gateway="sandbox", amount=100, currency="usd",
    )  # fmt: skip
    response = api.get("/v1/balance")
    assert response.status_code == 200
    assert response.json() == {
        "object": "balance",
        "available": [
            {"amount": 500, "currency": "eur"},
            {"amount": 841, "currency": "usd"},
        ],
        "pending": [{"amount": 0, "currency": "eur"}, {"amount": 0, "currency": "usd"}],
    }


def test_balance_of_a_new_merchant_is_empty(api):
    assert api.get("/v1/balance").json() == {
        "object": "balance",
        "available": [],
        "pending": [],
    }


def test_balance_without_a_key_is_401(client):
    assert client.get("/v1/balance").status_code == 401
