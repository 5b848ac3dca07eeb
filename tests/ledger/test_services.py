import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ledger.exceptions import InsufficientFunds
from ledger.models import JournalEntry, Posting
from ledger.selectors import merchant_balance
from ledger.services import (
    Settlement,
    fee_for,
    post_refund,
    post_settlements,
    refund_fee_share,
)
from tests.ledger.helpers import assert_ledger_clean, balances, settlement

pytestmark = pytest.mark.django_db

AVAILABLE = ("merchant:mer_1:available", "usd")
RECEIVABLE = ("gateway:sandbox:receivable", "usd")
FEES = ("fees", "usd")


def refund(refund_id="re_1", amount=500, fee_refund=0, merchant="mer_1"):
    return post_refund(
        refund_id=refund_id,
        payment_id="pay_1",
        merchant_id=merchant,
        gateway="sandbox",
        amount=amount,
        currency="usd",
        fee_refund=fee_refund,
    )


def test_settlement_debits_receivable_and_credits_merchant_and_fees():
    assert post_settlements([settlement()]) == 1
    assert balances() == {RECEIVABLE: 1000, AVAILABLE: 941, FEES: 59}
    assert Posting.objects.count() == 3
    assert merchant_balance("mer_1") == {"usd": {"available": 941, "pending": 0}}


def test_zero_fee_settlement_omits_the_fee_leg():
    post_settlements([settlement(fee=0)])
    assert Posting.objects.count() == 2
    assert balances() == {RECEIVABLE: 1000, AVAILABLE: 1000}


def test_fee_equal_to_amount_omits_the_merchant_leg():
    post_settlements([settlement(amount=30, fee=30)])
    assert balances() == {RECEIVABLE: 30, FEES: 30}


def test_posting_the_same_settlement_twice_leaves_one_entry_and_one_balance_change():
    assert post_settlements([settlement()]) == 1
    assert post_settlements([settlement(), settlement()]) == 0
    assert (
        JournalEntry.objects.filter(kind="settlement", reference="pay_1").count() == 1
    )
    assert Posting.objects.count() == 3
    assert balances() == {RECEIVABLE: 1000, AVAILABLE: 941, FEES: 59}


def test_batch_returns_only_newly_posted_count():
    post_settlements([settlement("pay_1")])
    assert post_settlements([settlement(f"pay_{i}") for i in range(1, 6)]) == 4


def test_conflicting_duplicates_in_one_batch_are_refused():
    with pytest.raises(ValueError):
        post_settlements([settlement(amount=1000), settlement(amount=999)])


def test_batch_updates_each_account_once_and_balances_equal_postings():
    items = [
        settlement(f"pay_{i}", merchant=f"mer_{i % 3}", amount=1000 + i, fee=i % 7)
        for i in range(300)
    ]
    with CaptureQueriesContext(connection) as queries:
        assert post_settlements(items) == 300
    statements = [q["sql"] for q in queries.captured_queries]
    # Fixed number of statements however large the batch (the balance UPDATE is
    # one statement-level trigger run: one row update per account).
    assert len(statements) <= 6, statements
    assert not any(s.lstrip().upper().startswith("UPDATE") for s in statements)
    assert balances()[RECEIVABLE] == sum(1000 + i for i in range(300))
    assert (
        sum(v for key, v in balances().items() if key != RECEIVABLE)
        == (balances()[RECEIVABLE])
    )
    assert_ledger_clean()


def test_balance_is_per_currency():
    post_settlements([settlement("pay_1"), settlement("pay_2", currency="eur")])
    assert merchant_balance("mer_1") == {
        "eur": {"available": 941, "pending": 0},
        "usd": {"available": 941, "pending": 0},
    }
    assert_ledger_clean()


def test_settlement_refuses_floats_and_unknown_currencies():
    with pytest.raises(ValueError):
        Settlement(
            payment_id="p",
            merchant_id="m",
            gateway="g",
            amount=10.0,
            currency="usd",
            fee=0,
        )
    with pytest.raises(ValueError):
        settlement(currency="USD")
    with pytest.raises(ValueError):
        settlement(amount=10, fee=11)


def test_fee_for_rounds_half_up_on_bps_and_never_exceeds_amount():
    assert fee_for(amount=1000, fee_bps=290, fee_fixed=30) == 59
    assert fee_for(amount=50, fee_bps=100, fee_fixed=0) == 1  # 0.5 rounds up
    assert fee_for(amount=49, fee_bps=100, fee_fixed=0) == 0  # 0.49 rounds down
    assert fee_for(amount=10, fee_bps=290, fee_fixed=30) == 10
    with pytest.raises(ValueError):
        fee_for(amount=10, fee_bps=1.5, fee_fixed=0)


def test_refund_fee_share_keeps_the_fee_by_default():
    assert refund_fee_share(fee=59, amount=1000, refund_amount=500) == 0
    assert (
        refund_fee_share(fee=59, amount=1000, refund_amount=500, policy="proportional")
        == 30
    )


def test_refund_reverses_settlement_and_keeps_the_fee():
    post_settlements([settlement()])
    assert refund(amount=941) is True
    assert balances() == {RECEIVABLE: 59, AVAILABLE: 0, FEES: 59}
    assert_ledger_clean()


def test_refund_returning_part_of_the_fee_debits_refunds_expense():
    post_settlements([settlement()])
    assert refund(amount=1000, fee_refund=59) is True
    assert balances() == {RECEIVABLE: 0, AVAILABLE: 0, FEES: 59, ("refunds", "usd"): 59}
    assert_ledger_clean()


def test_refund_is_idempotent_per_refund_id():
    post_settlements([settlement()])
    assert refund() is True
    assert refund() is False
    assert balances()[AVAILABLE] == 441
    assert JournalEntry.objects.filter(kind="refund").count() == 1


def test_refund_beyond_available_raises_insufficient_funds_and_writes_nothing():
    post_settlements([settlement()])
    with pytest.raises(InsufficientFunds) as excinfo:
        refund(amount=942)
    assert excinfo.value.code == "insufficient_funds"
    assert excinfo.value.status == 409
    assert not JournalEntry.objects.filter(kind="refund").exists()
    assert balances()[AVAILABLE] == 941


def test_refund_for_merchant_with_no_funds_raises_insufficient_funds():
    with pytest.raises(InsufficientFunds):
        refund(merchant="mer_empty")
