"""Double-entry ledger: accounts, journal entries, postings.

Sign convention: ``Account.balance`` is kept in the account's *normal* sign.
Debit-normal accounts (asset, expense) grow with debits: balance = debits -
credits. Credit-normal accounts (liability, revenue) grow with credits:
balance = credits - debits. So a merchant's available balance (a liability:
money the platform owes it) is a positive number.

On PostgreSQL the database enforces the invariants (migration 0002): balanced
entries per currency at commit, immutable entries and postings, balances moved
only by postings, and ``no_overdraft`` via a CHECK constraint.
"""

from django.db import models
from django.db.models import Q
from django.db.models.functions import Now


class AccountType(models.TextChoices):
    ASSET = "asset"
    LIABILITY = "liability"
    REVENUE = "revenue"
    EXPENSE = "expense"


DEBIT_NORMAL = frozenset({AccountType.ASSET, AccountType.EXPENSE})


class Direction(models.TextChoices):
    DEBIT = "debit"
    CREDIT = "credit"


class Account(models.Model):
    """One account per (code, currency), e.g. ``merchant:mer_1:available`` in usd."""

    code = models.CharField(max_length=128)
    type = models.CharField(max_length=16, choices=AccountType.choices)
    currency = models.CharField(max_length=3)
    no_overdraft = models.BooleanField(default=False)
    balance = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["code", "currency"], name="ledger_account_code_currency"
            ),
            models.CheckConstraint(
                condition=Q(type__in=AccountType.values),
                name="ledger_account_type_valid",
            ),
            models.CheckConstraint(
                condition=Q(currency__regex=r"^[a-z]{3}$"),
                name="ledger_account_currency_lower3",
            ),
            models.CheckConstraint(
                condition=Q(no_overdraft=False) | Q(balance__gte=0),
                name="ledger_account_no_overdraft",
            ),
        ]

    def __str__(self):
        return f"{self.code} ({self.currency})"

    @property
    def debit_normal(self) -> bool:
        return self.type in DEBIT_NORMAL


class JournalEntry(models.Model):
    """One business event. Unique per (kind, reference): posting is idempotent."""

    class Kind(models.TextChoices):
        SETTLEMENT = "settlement"
        REFUND = "refund"
        REFUND_REVERSAL = "refund_reversal"

    kind = models.CharField(max_length=32)
    reference = models.CharField(max_length=64)
    # The payment this entry belongs to (the reference itself for settlements).
    payment_id = models.CharField(max_length=40, null=True, blank=True)  # noqa: DJ001
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        verbose_name_plural = "journal entries"
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "reference"], name="ledger_entry_kind_reference"
            ),
        ]

    def __str__(self):
        return f"{self.kind}:{self.reference}"


class Posting(models.Model):
    """One leg of an entry. ``currency`` is the account's, copied for the
    per-currency balance check (a trigger refuses a mismatch)."""

    entry = models.ForeignKey(
        JournalEntry, on_delete=models.PROTECT, related_name="postings"
    )
    # No index of its own: nothing hot reads postings by account (balances
    # live in the account row); reconcile scans them all anyway.
    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="postings", db_index=False
    )
    amount = models.BigIntegerField()
    direction = models.CharField(max_length=6, choices=Direction.choices)
    currency = models.CharField(max_length=3)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gt=0), name="ledger_posting_amount_gt_0"
            ),
            models.CheckConstraint(
                condition=Q(direction__in=Direction.values),
                name="ledger_posting_direction_valid",
            ),
        ]

    def __str__(self):
        return f"{self.direction} {self.amount} {self.currency} #{self.account_id}"
