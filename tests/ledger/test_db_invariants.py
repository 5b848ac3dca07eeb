"""The database refuses what the service layer would never write (raw SQL)."""

import pytest
from django.db import IntegrityError, transaction

from ledger.models import Account, JournalEntry, Posting
from ledger.services import post_settlements
from tests.ledger.helpers import account_id, balances, settlement, sql

RECEIVABLE = "gateway:sandbox:receivable"
AVAILABLE = "merchant:mer_1:available"


def raw_entry(reference: str, legs: list[tuple[int, int, str, str]]) -> None:
    """Insert an entry and its (account_id, amount, direction, currency) legs."""
    [(entry_id,)] = sql(
        "INSERT INTO ledger_journalentry (kind, reference) VALUES ('manual', %s) "
        "RETURNING id",
        [reference],
    )
    for account, amount, direction, currency in legs:
        sql(
            "INSERT INTO ledger_posting (entry_id, account_id, amount, direction, "
            "currency) VALUES (%s, %s, %s, %s, %s)",
            [entry_id, account, amount, direction, currency],
        )


@pytest.fixture
def settled(db):
    post_settlements([settlement()])
    return account_id(RECEIVABLE), account_id(AVAILABLE)


@pytest.mark.django_db(transaction=True)
def test_raw_unbalanced_entry_fails_at_commit():
    post_settlements([settlement()])
    receivable, available = account_id(RECEIVABLE), account_id(AVAILABLE)
    with pytest.raises(IntegrityError, match="does not balance"):
        with transaction.atomic():
            raw_entry(
                "x1",
                [(receivable, 100, "debit", "usd"), (available, 99, "credit", "usd")],
            )
            # Accepted until commit: the check is deferred.
            assert Posting.objects.filter(entry__reference="x1").count() == 2
    assert not JournalEntry.objects.filter(reference="x1").exists()
    assert balances()[(RECEIVABLE, "usd")] == 1000


@pytest.mark.django_db(transaction=True)
def test_raw_balanced_entry_built_leg_by_leg_commits():
    post_settlements([settlement()])
    receivable, available = account_id(RECEIVABLE), account_id(AVAILABLE)
    with transaction.atomic():
        raw_entry(
            "x2", [(receivable, 100, "debit", "usd"), (available, 100, "credit", "usd")]
        )
    assert balances()[(RECEIVABLE, "usd")] == 1100
    assert balances()[(AVAILABLE, "usd")] == 1041


@pytest.mark.django_db(transaction=True)
def test_raw_posting_added_to_a_committed_entry_fails_at_commit():
    post_settlements([settlement()])
    entry = JournalEntry.objects.get(reference="pay_1")
    with pytest.raises(IntegrityError, match="does not balance"):
        with transaction.atomic():
            sql(
                "INSERT INTO ledger_posting (entry_id, account_id, amount, direction, "
                "currency) VALUES (%s, %s, 5, 'credit', 'usd')",
                [entry.pk, account_id(AVAILABLE)],
            )
    assert balances()[(AVAILABLE, "usd")] == 941


@pytest.mark.django_db(transaction=True)
def test_raw_entry_without_postings_fails_at_commit():
    with pytest.raises(IntegrityError, match="no postings"):
        with transaction.atomic():
            sql(
                "INSERT INTO ledger_journalentry (kind, reference) VALUES ('manual', 'x3')"
            )


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_posting SET amount = amount + 1",
        "DELETE FROM ledger_posting",
        "UPDATE ledger_journalentry SET reference = 'other'",
        "DELETE FROM ledger_journalentry",
    ],
)
def test_update_or_delete_of_entries_and_postings_fails(settled, statement):
    with pytest.raises(IntegrityError, match="refused"):
        with transaction.atomic():
            sql(statement)
    assert Posting.objects.count() == 3


def test_orm_update_of_a_posting_fails(settled):
    with pytest.raises(IntegrityError):
        with transaction.atomic():
            Posting.objects.update(amount=1)


def test_direct_balance_update_fails(settled):
    with pytest.raises(IntegrityError, match="only by postings"):
        with transaction.atomic():
            Account.objects.filter(code=AVAILABLE).update(balance=10**9)
    assert balances()[(AVAILABLE, "usd")] == 941


def test_account_cannot_open_with_a_balance(db):
    with pytest.raises(IntegrityError, match="opens at 0"):
        with transaction.atomic():
            Account.objects.create(
                code="fees", type="revenue", currency="usd", balance=5
            )


@pytest.mark.parametrize(
    "change",
    ["no_overdraft = false", "currency = 'eur'", "code = 'x'", "type = 'asset'"],
)
def test_account_identity_is_immutable(settled, change):
    with pytest.raises(IntegrityError, match="immutable"):
        with transaction.atomic():
            sql(f"UPDATE ledger_account SET {change} WHERE code = %s", [AVAILABLE])  # noqa: S608


def test_accounts_are_never_deleted(settled):
    with pytest.raises(IntegrityError):
        with transaction.atomic():
            sql("DELETE FROM ledger_account")


def test_no_overdraft_is_enforced_against_raw_sql(settled):
    receivable, available = settled
    with pytest.raises(IntegrityError, match="no_overdraft"):
        with transaction.atomic():
            raw_entry(
                "x4",
                [(available, 942, "debit", "usd"), (receivable, 942, "credit", "usd")],
            )
    assert balances()[(AVAILABLE, "usd")] == 941


def test_posting_in_another_currency_than_its_account_fails(settled):
    receivable, _ = settled
    with pytest.raises(IntegrityError, match="currency"):
        with transaction.atomic():
            raw_entry("x5", [(receivable, 1, "debit", "eur")])


def test_non_positive_posting_amount_fails(settled):
    receivable, _ = settled
    with pytest.raises(IntegrityError):
        with transaction.atomic():
            raw_entry("x6", [(receivable, 0, "debit", "usd")])


def test_duplicate_kind_and_reference_fails(settled):
    with pytest.raises(IntegrityError):
        with transaction.atomic():
            JournalEntry.objects.create(kind="settlement", reference="pay_1")
