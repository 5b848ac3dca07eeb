import threading

import pytest
from django.db import connection

from ledger.exceptions import InsufficientFunds
from ledger.services import post_refund, post_settlements
from tests.ledger.helpers import assert_ledger_clean, balances, settlement


def run_in_threads(n: int, work) -> list:
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except Exception as exc:
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.mark.django_db(transaction=True)
def test_concurrent_refunds_beyond_available_only_the_ones_that_fit_succeed():
    post_settlements([settlement(amount=1000, fee=0)])  # merchant holds 1000

    def refund(i: int) -> bool:
        return post_refund(
            refund_id=f"re_{i}",
            payment_id="pay_1",
            merchant_id="mer_1",
            gateway="sandbox",
            amount=300,
            currency="usd",
        )

    results = run_in_threads(8, refund)
    assert sum(r is True for r in results) == 3
    assert sum(isinstance(r, InsufficientFunds) for r in results) == 5
    assert balances()[("merchant:mer_1:available", "usd")] == 100
    assert_ledger_clean()


@pytest.mark.django_db(transaction=True)
def test_concurrent_overlapping_settlement_batches_post_each_payment_once():
    def batch(i: int) -> int:
        # Every thread posts the same 50 payments, in a different order.
        items = [settlement(f"pay_{j}", merchant=f"mer_{j % 4}") for j in range(50)]
        return post_settlements(items[i:] + items[:i])

    results = run_in_threads(4, batch)
    assert all(isinstance(r, int) for r in results), results
    assert sum(results) == 50
    assert balances()[("gateway:sandbox:receivable", "usd")] == 50 * 1000
    assert_ledger_clean()
