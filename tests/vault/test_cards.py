from datetime import date

import pytest

from tests.vault.conftest import luhn_complete
from vault import cards
from vault.cards import CardBrand as B
from vault.exceptions import (
    ExpiredCard,
    InvalidCVC,
    InvalidExpiryMonth,
    InvalidExpiryYear,
    InvalidNumber,
)

TODAY = date(2026, 6, 15)


@pytest.mark.parametrize(
    ("number", "brand"),
    [
        ("4242424242424242", B.VISA),
        ("4222222222222", B.VISA),
        ("5555555555554444", B.MASTERCARD),
        ("5105105105105100", B.MASTERCARD),
        ("2221000000000009", B.MASTERCARD),
        ("2223003122003222", B.MASTERCARD),
        ("2720990000000007", B.MASTERCARD),
        ("378282246310005", B.AMEX),
        ("341111111111111", B.AMEX),
        ("6011111111111117", B.DISCOVER),
        ("6445644564456445", B.DISCOVER),
        ("6500000000000002", B.DISCOVER),
        ("3530111333300000", B.JCB),
        ("3589000000000003", B.JCB),
        ("30569309025904", B.DINERS),
        ("36227206271667", B.DINERS),
        ("3852000002323700", B.DINERS),
        ("6200000000000005", B.UNIONPAY),
    ],
)
def test_brand_is_detected_from_the_iin_range(number, brand):
    assert cards.check_number(number) == (number, brand)


@pytest.mark.parametrize(
    "prefix", ["2220", "2721", "50", "56", "33", "3527", "3590", "306"]
)
def test_numbers_outside_every_supported_range_are_refused(prefix):
    number = luhn_complete(prefix.ljust(15, "0"))
    with pytest.raises(InvalidNumber) as info:
        cards.check_number(number)
    assert info.value.code == "card_brand_not_supported"


@pytest.mark.parametrize(
    "number",
    [
        luhn_complete("4" * 14),  # Visa with 15 digits
        luhn_complete("55" + "0" * 14),  # Mastercard with 17
        luhn_complete("37" + "0" * 13),  # Amex with 16
        luhn_complete("36" + "0" * 10),  # Diners with 13
    ],
)
def test_wrong_length_for_the_brand_is_refused(number):
    with pytest.raises(InvalidNumber, match="wrong length"):
        cards.check_number(number)


def test_spaces_and_dashes_are_ignored():
    assert cards.check_number("4242 4242-4242 4242")[0] == "4242424242424242"


@pytest.mark.parametrize(
    "number", ["4242424242424241", "4242x42424242424", "", "٤٢٤٢٤٢٤٢٤٢٤٢٤٢٤٢", 4242]
)
def test_bad_numbers_are_refused_naming_the_field(number):
    with pytest.raises(InvalidNumber) as info:
        cards.check_number(number)
    assert info.value.param == "number"


def test_error_messages_never_contain_the_number():
    for number in ["4242424242424241", "4242424242424", "9242424242424242"]:
        with pytest.raises(InvalidNumber) as info:
            cards.check_number(number)
        assert number not in str(info.value)


@pytest.mark.parametrize(
    ("month", "year", "error", "param"),
    [
        (13, 2030, InvalidExpiryMonth, "exp_month"),
        (0, 2030, InvalidExpiryMonth, "exp_month"),
        ("12", 2030, InvalidExpiryMonth, "exp_month"),
        (True, 2030, InvalidExpiryMonth, "exp_month"),
        (12, "2030", InvalidExpiryYear, "exp_year"),
        (12, 2030.0, InvalidExpiryYear, "exp_year"),
        (12, 2200, InvalidExpiryYear, "exp_year"),
        (12, 1999, InvalidExpiryYear, "exp_year"),
        (12, 2025, ExpiredCard, "exp_year"),
        (5, 2026, ExpiredCard, "exp_month"),
    ],
)
def test_bad_expiry_is_refused_naming_the_field(month, year, error, param):
    with pytest.raises(error) as info:
        cards.check_expiry(exp_month=month, exp_year=year, today=TODAY)
    assert info.value.param == param


def test_card_is_good_through_the_end_of_its_expiry_month():
    assert cards.check_expiry(exp_month=6, exp_year=2026, today=TODAY) == (6, 2026)
    assert not cards.is_expired(exp_month=6, exp_year=2026, today=date(2026, 6, 30))
    assert cards.is_expired(exp_month=6, exp_year=2026, today=date(2026, 7, 1))


def test_two_digit_year_means_this_century():
    assert cards.check_expiry(exp_month=1, exp_year=30, today=TODAY) == (1, 2030)


@pytest.mark.parametrize(
    ("cvc", "brand"),
    [("1234", B.VISA), ("12", B.VISA), ("123", B.AMEX), ("12a", B.VISA), (123, B.VISA)],
)
def test_bad_cvc_is_refused_naming_the_field(cvc, brand):
    with pytest.raises(InvalidCVC) as info:
        cards.check_cvc(cvc, brand=brand)
    assert info.value.param == "cvc"


def test_cvc_is_four_digits_for_amex_and_three_otherwise():
    cards.check_cvc("1234", brand=B.AMEX)
    cards.check_cvc("123", brand=B.MASTERCARD)
