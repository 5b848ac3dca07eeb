import pytest

from ledger.models import Account, Posting
from ledger.selectors import merchant_balance
from ledger.services import Settlement, fee_for, post_settlements

pytestmark = pytest.mark.django_db


def settlement(pid="pay_1", merchant="mer_1", amount=1000, fee=59, currency="usd"):
    return Settlement(
        payment_id=pid,
        merchant_id=merchant,
        gateway="sandbox",
        amount=amount,
        currency=currency,
        fee=fee,
    )


def balances() -> dict[tuple[str, str], int]:
    return {(a.code, a.currency): a.balance for a in Account.objects.all()}


def test_settlement_posts_three_balanced_legs():
    assert post_settlements([settlement()]) == 1
    assert balances() == {
        ("gateway:sandbox:receivable", "usd"): 1000,
        ("merchant:mer_1:available", "usd"): 941,
        ("fees", "usd"): 59,
    }
    assert Posting.objects.count() == 3
    assert merchant_balance("mer_1") == {"usd": {"available": 941, "pending": 0}}


def test_fee_for_rounds_half_up_and_never_exceeds_amount():
    assert fee_for(amount=1000, fee_bps=290, fee_fixed=30) == 59
    assert fee_for(amount=50, fee_bps=100, fee_fixed=0) == 1  # 0.5 rounds up
    assert fee_for(amount=49, fee_bps=100, fee_fixed=0) == 0
    assert fee_for(amount=10, fee_bps=290, fee_fixed=30) == 10
