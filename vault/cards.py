"""Card number rules: normalization, Luhn, brand by IIN range, expiry, CVC.

Pure functions with no ORM and no I/O. Every error message is safe to show
and log: none contains the number or the CVC.
"""

import re
from datetime import date

from django.db import models

from core.pan import luhn_ok
from vault.error_codes import ErrorCode
from vault.exceptions import (
    ExpiredCard,
    InvalidCVC,
    InvalidExpiryMonth,
    InvalidExpiryYear,
    InvalidNumber,
)

# Refuse expiry years further out than this: real cards run <= ~10 years, but
# test suites like 2099.
MAX_YEARS_AHEAD = 100


class CardBrand(models.TextChoices):
    VISA = "visa", "Visa"
    MASTERCARD = "mastercard", "Mastercard"
    AMEX = "amex", "American Express"
    DISCOVER = "discover", "Discover"
    JCB = "jcb", "JCB"
    DINERS = "diners", "Diners Club"
    UNIONPAY = "unionpay", "UnionPay"


B = CardBrand
# (prefix digits, low, high, brand); the ranges do not overlap.
IIN_RANGES: tuple[tuple[int, int, int, CardBrand], ...] = (
    (1, 4, 4, B.VISA),
    (2, 51, 55, B.MASTERCARD),
    (4, 2221, 2720, B.MASTERCARD),
    (2, 34, 34, B.AMEX),
    (2, 37, 37, B.AMEX),
    (4, 6011, 6011, B.DISCOVER),
    (3, 644, 649, B.DISCOVER),
    (2, 65, 65, B.DISCOVER),
    (4, 3528, 3589, B.JCB),
    (3, 300, 305, B.DINERS),
    (2, 36, 36, B.DINERS),
    (2, 38, 39, B.DINERS),
    (2, 62, 62, B.UNIONPAY),
)
LENGTHS: dict[CardBrand, frozenset[int]] = {
    B.VISA: frozenset({13, 16, 19}),
    B.MASTERCARD: frozenset({16}),
    B.AMEX: frozenset({15}),
    B.DISCOVER: frozenset(range(16, 20)),
    B.JCB: frozenset(range(16, 20)),
    B.DINERS: frozenset(range(14, 20)),
    B.UNIONPAY: frozenset(range(16, 20)),
}
_DIGITS = re.compile(r"[0-9]+")
_SEPARATORS = re.compile(r"[ -]")


def card_brand(pan: str) -> CardBrand | None:
    """The brand whose IIN range holds ``pan``, or None."""
    for width, low, high, brand in IIN_RANGES:
        prefix = pan[:width]
        if len(prefix) == width and low <= int(prefix) <= high:
            return brand
    return None


def check_number(number: object) -> tuple[str, CardBrand]:
    """Normalize (drop spaces and dashes) and validate; return (pan, brand)."""
    if not isinstance(number, str):
        raise InvalidNumber("The card number must be a string.", param="number")
    pan = _SEPARATORS.sub("", number)
    if not _DIGITS.fullmatch(pan):
        raise InvalidNumber(
            "The card number may contain only digits, spaces and dashes.",
            param="number",
        )
    brand = card_brand(pan)
    if brand is None:
        raise InvalidNumber(
            "The card brand is not supported.",
            param="number",
            code=ErrorCode.CARD_BRAND_NOT_SUPPORTED,
        )
    if len(pan) not in LENGTHS[brand]:
        raise InvalidNumber(
            f"The card number has the wrong length for a {brand.label} card.",
            param="number",
        )
    if not luhn_ok(pan):
        raise InvalidNumber("The card number is incorrect.", param="number")
    return pan, brand


def is_expired(*, exp_month: int, exp_year: int, today: date) -> bool:
    """A card is good through the last day of its expiry month (UTC)."""
    return (exp_year, exp_month) < (today.year, today.month)


def check_expiry(
    *, exp_month: object, exp_year: object, today: date
) -> tuple[int, int]:
    """Validate types and range; two-digit years mean 20xx. Return (month, year)."""
    if type(exp_month) is not int or not 1 <= exp_month <= 12:
        raise InvalidExpiryMonth(
            "The expiry month must be an integer from 1 to 12.", param="exp_month"
        )
    if type(exp_year) is not int or exp_year < 0:
        raise InvalidExpiryYear(
            "The expiry year must be a four-digit integer.", param="exp_year"
        )
    year = 2000 + exp_year if exp_year < 100 else exp_year
    if year > today.year + MAX_YEARS_AHEAD or year < 2000:
        raise InvalidExpiryYear("The expiry year is invalid.", param="exp_year")
    if year < today.year:
        raise ExpiredCard("The card has expired.", param="exp_year")
    if is_expired(exp_month=exp_month, exp_year=year, today=today):
        raise ExpiredCard("The card has expired.", param="exp_month")
    return exp_month, year


def check_cvc(cvc: object, *, brand: CardBrand) -> None:
    """Amex has 4 digits, every other brand 3. The value is not kept."""
    want = 4 if brand == B.AMEX else 3
    if not isinstance(cvc, str) or not (_DIGITS.fullmatch(cvc) and len(cvc) == want):
        raise InvalidCVC(
            f"The CVC must be {want} digits for a {brand.label} card.", param="cvc"
        )
