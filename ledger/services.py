"""Every write to the ledger. Amounts are ints in minor units, never floats.

Posting is idempotent: an entry is unique per (kind, reference), and legs are
written only for entries this call actually created. Accounts are locked in id
order before anything is written, so concurrent batches queue instead of
deadlocking. A statement-level trigger moves the balances (one UPDATE per
account per batch, in the same statement as the postings).
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction

from core.money import is_currency
from core.sql import pg_cursor
from ledger.exceptions import InsufficientFunds
from ledger.models import (
    Account,
    AccountType,
    Direction,
    JournalEntry,
    Posting,
)

FEES = "fees"
REFUNDS = "refunds"  # expense: fees given back to merchants on refunds
SETTLEMENT = JournalEntry.Kind.SETTLEMENT.value
REFUND = JournalEntry.Kind.REFUND.value
DEBIT = Direction.DEBIT.value
CREDIT = Direction.CREDIT.value

AccountKey = tuple[str, str]  # (code, currency)


def merchant_available(merchant_id: str) -> str:
    return f"merchant:{merchant_id}:available"


def merchant_pending(merchant_id: str) -> str:
    return f"merchant:{merchant_id}:pending"


def gateway_receivable(gateway: str) -> str:
    return f"gateway:{gateway}:receivable"


def account_spec(code: str) -> tuple[str, bool]:
    """(type, no_overdraft) of an account, from its code."""
    if code.startswith("merchant:"):
        return AccountType.LIABILITY.value, True
    if code.startswith("gateway:"):
        return AccountType.ASSET.value, False
    if code == FEES:
        return AccountType.REVENUE.value, False
    if code == REFUNDS:
        return AccountType.EXPENSE.value, False
    raise ValueError(f"unknown account code {code!r}")


def fee_for(*, amount: int, fee_bps: int, fee_fixed: int) -> int:
    """``amount * fee_bps / 10_000`` rounded half up, plus ``fee_fixed``,
    capped at ``amount`` (a fee never makes the merchant's leg negative)."""
    for name, value in {
        "amount": amount,
        "fee_bps": fee_bps,
        "fee_fixed": fee_fixed,
    }.items():
        if type(value) is not int or value < 0:
            raise ValueError(f"{name} must be a non-negative int")
    return min(amount, (amount * fee_bps + 5_000) // 10_000 + fee_fixed)


def refund_fee_share(
    *, fee: int, amount: int, refund_amount: int, policy: str | None = None
) -> int:
    """The part of a payment's fee given back on a refund, per policy
    (``settings.SURGE_REFUND_FEE_POLICY``, default ``"none"``):
    ``none`` keeps the fee; ``proportional`` returns
    ``fee * refund_amount / amount`` rounded half up."""
    policy = policy or getattr(settings, "SURGE_REFUND_FEE_POLICY", "none")
    if policy == "none":
        return 0
    if policy == "proportional":
        if not 0 < refund_amount <= amount:
            raise ValueError("refund_amount must be in 1..amount")
        return (2 * fee * refund_amount + amount) // (2 * amount)
    raise ValueError(f"unknown refund fee policy {policy!r}")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _positive_int(value: object) -> bool:
    return type(value) is int and value > 0


@dataclass(frozen=True, slots=True)
class Settlement:
    """A succeeded payment moving into the ledger; ``fee`` is the platform's."""

    payment_id: str
    merchant_id: str
    gateway: str
    amount: int
    currency: str
    fee: int

    def __post_init__(self) -> None:
        _require(bool(self.payment_id), "payment_id is required")
        _require(bool(self.merchant_id), "merchant_id is required")
        _require(bool(self.gateway), "gateway is required")
        _require(_positive_int(self.amount), "amount must be a positive int")
        _require(is_currency(self.currency), f"unknown currency {self.currency!r}")
        _require(
            type(self.fee) is int and 0 <= self.fee <= self.amount,
            "fee must be an int in 0..amount",
        )


# --- SQL helpers --------------------------------------------------------------


def _rows(
    columns: Sequence[tuple[str, str]], rows: Sequence[tuple]
) -> tuple[str, list]:
    """A row source for INSERT ... SELECT: ``unnest`` of one array per column (a
    handful of parameters however many rows). Binary arrays (%b, see core.sql):
    run them with ``pg_cursor()``."""
    arrays = [list(col) for col in zip(*rows, strict=True)]
    casts = ", ".join(f"%b::{pg_type}[]" for _, pg_type in columns)
    return f"SELECT * FROM unnest({casts})", arrays  # noqa: S608 (fixed types)


def _lock_accounts(keys: Iterable[AccountKey]) -> dict[AccountKey, tuple[int, str]]:
    """Get or create the accounts and lock them in id order: {key: (id, type)}."""
    keys = sorted(set(keys))
    specs = [(code, *account_spec(code), currency) for code, currency in keys]
    source, params = _rows(
        [
            ("code", "text"),
            ("type", "text"),
            ("no_overdraft", "boolean"),
            ("currency", "text"),
        ],
        specs,
    )
    table = Account._meta.db_table
    pairs = ", ".join(["(%s, %s)"] * len(keys))
    with pg_cursor() as cursor:
        # Sorted, so two batches creating the same new accounts wait, not deadlock.
        cursor.execute(
            f"INSERT INTO {table} (code, type, no_overdraft, currency, balance) "  # noqa: S608
            f"SELECT c.*, 0 FROM ({source}) AS c "
            "WHERE 1 = 1 ON CONFLICT (code, currency) DO NOTHING",
            params,
        )
        cursor.execute(
            f"SELECT id, code, currency, type FROM {table} "  # noqa: S608
            f"WHERE (code, currency) IN (VALUES {pairs}) ORDER BY id FOR UPDATE",
            [v for key in keys for v in key],
        )
        return {(code, cur): (pk, typ) for pk, code, cur, typ in cursor.fetchall()}


def _insert_entries(
    kind: str, refs: Sequence[tuple[str, str | None]]
) -> dict[str, int]:
    """Insert (reference, payment_id) entries; return {reference: id} of the ones
    created now. Existing ones are skipped by ON CONFLICT, never touched."""
    source, params = _rows([("reference", "text"), ("payment_id", "text")], refs)
    with pg_cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {JournalEntry._meta.db_table} (kind, reference, payment_id) "  # noqa: S608
            f"SELECT %s, e.* FROM ({source}) AS e WHERE 1 = 1 "
            "ON CONFLICT (kind, reference) DO NOTHING RETURNING id, reference",
            [kind, *params],
        )
        return {ref: pk for pk, ref in cursor.fetchall()}


# (entry_id, account_id, amount, direction, currency)
Leg = tuple[int, int, int, str, str]


def _insert_postings(legs: Sequence[Leg]) -> None:
    if not legs:
        return
    source, params = _rows(
        [
            ("entry_id", "bigint"),
            ("account_id", "bigint"),
            ("amount", "bigint"),
            ("direction", "text"),
            ("currency", "text"),
        ],
        legs,
    )
    with pg_cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Posting._meta.db_table} "  # noqa: S608
            "(entry_id, account_id, amount, direction, currency) "
            f"SELECT p.* FROM ({source}) AS p",
            params,
        )


def _overdraft(exc: IntegrityError) -> bool:
    cause = exc.__cause__
    name = getattr(getattr(cause, "diag", None), "constraint_name", None)
    return name == "ledger_account_no_overdraft" or "no_overdraft" in str(exc)


# --- Services ---------------------------------------------------------------


def post_settlements(items: Sequence[Settlement]) -> int:
    """Post settled payments: debit ``gateway:<g>:receivable`` A, credit
    ``merchant:<id>:available`` A-F, credit ``fees`` F (zero legs omitted).

    Meant for batches of hundreds inside the caller's transaction (the settle
    stage). Payments already posted are skipped. Returns the number of entries
    posted now.
    """
    unique: dict[str, Settlement] = {}
    for item in items:
        seen = unique.setdefault(item.payment_id, item)
        if seen != item:
            raise ValueError(f"conflicting settlements for {item.payment_id}")
    if not unique:
        return 0
    keys: set[AccountKey] = set()
    for s in unique.values():
        keys.add((gateway_receivable(s.gateway), s.currency))
        if s.amount - s.fee:
            keys.add((merchant_available(s.merchant_id), s.currency))
        if s.fee:
            keys.add((FEES, s.currency))
    with transaction.atomic():
        accounts = _lock_accounts(keys)
        created = _insert_entries(SETTLEMENT, [(pid, pid) for pid in unique])
        legs: list[Leg] = []
        for pid, entry_id in created.items():
            s = unique[pid]
            cur = s.currency
            receivable = accounts[gateway_receivable(s.gateway), cur][0]
            legs.append((entry_id, receivable, s.amount, DEBIT, cur))
            if s.amount - s.fee:
                account = accounts[merchant_available(s.merchant_id), cur][0]
                legs.append((entry_id, account, s.amount - s.fee, CREDIT, cur))
            if s.fee:
                legs.append((entry_id, accounts[FEES, cur][0], s.fee, CREDIT, cur))
        _insert_postings(legs)
    return len(created)


def post_refund(
    *,
    refund_id: str,
    payment_id: str,
    merchant_id: str,
    gateway: str,
    amount: int,
    currency: str,
    fee_refund: int = 0,
) -> bool:
    """Post a refund: debit the merchant's available A-R, debit ``refunds`` R,
    credit ``gateway:<g>:receivable`` A, where R is the part of the fee given
    back (see ``refund_fee_share``; by default none).

    Idempotent per ``refund_id``: returns False if it was already posted.
    Raises ``InsufficientFunds`` when the merchant's available balance does not
    cover A-R; the database's no-overdraft CHECK backs this up.
    """
    _require(bool(refund_id) and bool(payment_id), "refund_id and payment_id required")
    _require(bool(merchant_id) and bool(gateway), "merchant_id and gateway required")
    _require(_positive_int(amount), "amount must be a positive int")
    _require(is_currency(currency), f"unknown currency {currency!r}")
    _require(
        type(fee_refund) is int and 0 <= fee_refund <= amount,
        "fee_refund must be an int in 0..amount",
    )
    available = (merchant_available(merchant_id), currency)
    receivable = (gateway_receivable(gateway), currency)
    debit = amount - fee_refund
    keys = {available, receivable} | ({(REFUNDS, currency)} if fee_refund else set())
    try:
        with transaction.atomic():
            accounts = _lock_accounts(keys)
            if JournalEntry.objects.filter(kind=REFUND, reference=refund_id).exists():
                return False
            # Read under the lock: no concurrent refund can spend it meanwhile.
            balance = Account.objects.get(pk=accounts[available][0]).balance
            if debit > balance:
                raise InsufficientFunds(
                    f"The merchant's available balance ({balance} {currency}) does "
                    f"not cover this refund ({debit} {currency})."
                )
            created = _insert_entries(REFUND, [(refund_id, payment_id)])
            if not created:
                return False
            entry_id = created[refund_id]
            legs: list[Leg] = [
                (entry_id, accounts[receivable][0], amount, CREDIT, currency)
            ]
            if debit:
                legs.append((entry_id, accounts[available][0], debit, DEBIT, currency))
            if fee_refund:
                refunds = accounts[REFUNDS, currency][0]
                legs.append((entry_id, refunds, fee_refund, DEBIT, currency))
            _insert_postings(legs)
    except IntegrityError as exc:
        if _overdraft(exc):
            raise InsufficientFunds(
                "The merchant's available balance does not cover this refund."
            ) from exc
        raise
    return True


REFUND_REVERSAL = JournalEntry.Kind.REFUND_REVERSAL.value


def post_refund_reversal(*, refund_id: str, payment_id: str, **_: object) -> bool:
    """Undo a refund the gateway refused: mirror its entry's legs, idempotently.

    Corrections are new entries (entries are immutable). Returns False if the
    refund was never posted or was already reversed.
    """
    original = list(
        Posting.objects.filter(
            entry__kind=REFUND, entry__reference=refund_id
        ).values_list("account_id", "amount", "direction", "currency")
    )
    if not original:
        return False
    with transaction.atomic():
        # Lock the accounts in id order, as every posting does.
        list(
            Account.objects.select_for_update()
            .filter(pk__in=sorted({a for a, *_ in original}))
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        created = _insert_entries(REFUND_REVERSAL, [(refund_id, payment_id)])
        if not created:
            return False
        entry_id = created[refund_id]
        flip = {DEBIT: CREDIT, CREDIT: DEBIT}
        legs: list[Leg] = [
            (entry_id, account, amount, flip[direction], currency)
            for account, amount, direction, currency in original
        ]
        _insert_postings(legs)
    return True
