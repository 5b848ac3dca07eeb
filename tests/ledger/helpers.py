from django.db import connection

from ledger.models import Account
from ledger.reconcile import check_ledger
from ledger.services import Settlement


def settlement(
    pid="pay_1",
    merchant="mer_1",
    amount=1000,
    fee=59,
    currency="usd",
    gateway="sandbox",
) -> Settlement:
    return Settlement(
        payment_id=pid,
        merchant_id=merchant,
        gateway=gateway,
        amount=amount,
        currency=currency,
        fee=fee,
    )


def balances() -> dict[tuple[str, str], int]:
    return {(a.code, a.currency): a.balance for a in Account.objects.all()}


def account_id(code: str, currency: str = "usd") -> int:
    return Account.objects.get(code=code, currency=currency).pk


def sql(statement: str, params=()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def assert_ledger_clean() -> None:
    breaks, _ = check_ledger()
    assert breaks == []
