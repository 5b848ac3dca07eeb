"""Any sequence of settlements, refunds and fees keeps every invariant."""

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.exceptions import InsufficientFunds
from ledger.services import fee_for, post_refund, post_settlements, refund_fee_share
from tests.ledger.helpers import assert_ledger_clean, balances, settlement

pytestmark = pytest.mark.django_db

settle_op = st.tuples(
    st.just("settle"),
    st.integers(0, 2),  # merchant
    st.sampled_from(["usd", "jpy"]),
    st.sampled_from(["sandbox", "sim"]),
    st.integers(1, 10**9),  # amount
    st.integers(0, 1000),  # fee_bps
    st.integers(0, 100),  # fee_fixed
)
refund_op = st.tuples(
    st.just("refund"),
    st.integers(0, 50),  # which settled payment
    st.integers(1, 100),  # percent of its amount
    st.sampled_from(["none", "proportional"]),
)
repeat_op = st.tuples(st.just("repeat"), st.integers(0, 50))
ops = st.lists(st.one_of(settle_op, refund_op, repeat_op), max_size=30)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=ops, batch=st.integers(1, 8))
def test_any_sequence_keeps_balances_equal_to_postings_and_a_model(ops, batch):
    with transaction.atomic():
        expected: dict[tuple[str, str], int] = {}
        settled: list = []
        pending: list = []
        refunds = 0

        def add(key, delta):
            expected[key] = expected.get(key, 0) + delta

        def flush():
            post_settlements(pending)
            for s in pending:
                add((f"gateway:{s.gateway}:receivable", s.currency), s.amount)
                add(
                    (f"merchant:{s.merchant_id}:available", s.currency),
                    s.amount - s.fee,
                )
                add(("fees", s.currency), s.fee)
            settled.extend(pending)
            pending.clear()

        for op in ops:
            if op[0] == "settle":
                _, m, cur, gw, amount, bps, fixed = op
                fee = fee_for(amount=amount, fee_bps=bps, fee_fixed=fixed)
                assert 0 <= fee <= amount
                pending.append(
                    settlement(
                        f"pay_{len(settled) + len(pending)}",
                        f"mer_{m}",
                        amount,
                        fee,
                        cur,
                        gw,
                    )
                )
                if len(pending) >= batch:
                    flush()
            elif op[0] == "repeat" and settled:
                assert post_settlements([settled[op[1] % len(settled)]]) == 0
            elif op[0] == "refund" and settled:
                flush()
                s = settled[op[1] % len(settled)]
                amount = max(1, s.amount * op[2] // 100)
                fee_refund = refund_fee_share(
                    fee=s.fee, amount=s.amount, refund_amount=amount, policy=op[3]
                )
                key = (f"merchant:{s.merchant_id}:available", s.currency)
                refunds += 1
                try:
                    posted = post_refund(
                        refund_id=f"re_{refunds}",
                        payment_id=s.payment_id,
                        merchant_id=s.merchant_id,
                        gateway=s.gateway,
                        amount=amount,
                        currency=s.currency,
                        fee_refund=fee_refund,
                    )
                except InsufficientFunds:
                    assert expected.get(key, 0) < amount - fee_refund
                    continue
                assert posted
                add(key, -(amount - fee_refund))
                add((f"gateway:{s.gateway}:receivable", s.currency), -amount)
                add(("refunds", s.currency), fee_refund)
        flush()
        actual = balances()
        assert {k: v for k, v in actual.items() if v} == {
            k: v for k, v in expected.items() if v
        }
        assert all(
            v >= 0 for (code, _), v in actual.items() if code.startswith("merchant:")
        )
        assert_ledger_clean()
        transaction.set_rollback(True)
