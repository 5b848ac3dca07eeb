import threading

import pytest
from django.db import connections

from ledger.selectors import merchant_balance
from ledger.services import Settlement, post_settlements
from payments.models import Event, Payment, Refund
from tests.factories import TokenFactory

pytestmark = pytest.mark.django_db


def settled_payment(merchant, amount=10_000, fee=0):
    token = TokenFactory(merchant_id=merchant.id)
    payment = Payment.objects.create(
        merchant=merchant, amount=amount, currency="usd", source=token,
        status="settled", gateway="sandbox", gateway_reference="ch_x", fee=fee,
    )  # fmt: skip
    post_settlements(
        [
            Settlement(
                payment_id=payment.pk, merchant_id=merchant.id, gateway="sandbox",
                amount=amount, currency="usd", fee=fee,
            )
        ]
    )  # fmt: skip
    return payment


def refund(api, payment_id, key, **body):
    return api.post(
        f"/v1/payments/{payment_id}/refunds", data=body, format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )  # fmt: skip


def test_full_refund_by_default_reserves_funds_and_is_pending(api, merchant):
    payment = settled_payment(merchant)
    resp = refund(api, payment.pk, "r1")
    assert resp.status_code == 202, resp.content
    data = resp.json()
    assert data["id"].startswith("re_") and data["status"] == "pending"
    assert data["amount"] == 10_000
    payment.refresh_from_db()
    assert payment.amount_refunded == 10_000 and payment.status == "settled"
    assert merchant_balance(merchant.id)["usd"]["available"] == 0
    assert Event.objects.filter(type="refund.created", payment=payment).count() == 1


def test_partial_refunds_add_up_and_cannot_exceed_the_amount(api, merchant):
    payment = settled_payment(merchant)
    assert refund(api, payment.pk, "a", amount=4000).status_code == 202
    assert refund(api, payment.pk, "b", amount=6000).status_code == 202
    over = refund(api, payment.pk, "c", amount=1)
    assert over.status_code == 400
    assert over.json()["error"]["param"] == "amount"
    assert Refund.objects.filter(payment=payment).count() == 2


def test_refund_replays_with_the_same_key(api, merchant):
    payment = settled_payment(merchant)
    first = refund(api, payment.pk, "same", amount=100)
    again = refund(api, payment.pk, "same", amount=100)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert Refund.objects.count() == 1


@pytest.mark.parametrize("amount", [0, -5, 10.5, "100", True])
def test_bad_refund_amount_is_400(api, merchant, amount):
    payment = settled_payment(merchant)
    resp = refund(api, payment.pk, "bad", amount=amount)
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "amount"
    assert Refund.objects.count() == 0


def test_refund_of_an_unsettled_payment_is_400(api, merchant):
    token = TokenFactory(merchant_id=merchant.id)
    payment = Payment.objects.create(
        merchant=merchant, amount=100, currency="usd", source=token
    )
    resp = refund(api, payment.pk, "k")
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "payment_not_refundable"


def test_refund_of_another_merchants_payment_is_404(api):
    from tests.factories import MerchantFactory

    payment = settled_payment(MerchantFactory())
    assert refund(api, payment.pk, "k").status_code == 404
    assert Refund.objects.count() == 0


def test_refund_beyond_what_the_merchant_holds_is_refused(api, merchant):
    payment = settled_payment(merchant, amount=10_000, fee=500)  # holds 9,500
    resp = refund(api, payment.pk, "k")
    assert resp.status_code == 409
    assert resp.json()["error"]["code"] == "insufficient_funds"
    payment.refresh_from_db()
    assert payment.amount_refunded == 0 and Refund.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_refunds_beyond_the_payment_only_the_fitting_succeed(
    merchant_and_key, client_for
):
    merchant, secret = merchant_and_key
    payment = settled_payment(merchant, amount=10_000)
    # A second payment gives the merchant funds, so only the payment cap binds.
    settled_payment(merchant, amount=50_000)
    barrier = threading.Barrier(8)
    codes = []

    def worker(i):
        try:
            barrier.wait()
            codes.append(
                refund(client_for(secret), payment.pk, f"c{i}", amount=3000).status_code
            )
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [202, 202, 202, 400, 400, 400, 400, 400]
    payment.refresh_from_db()
    assert payment.amount_refunded == 9000
    assert Refund.objects.filter(payment=payment).count() == 3
