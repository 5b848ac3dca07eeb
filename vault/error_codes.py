"""Every code the vault puts in an API error (``POST /v1/tokens``)."""

from enum import StrEnum


class ErrorCode(StrEnum):
    CARD_INVALID = "card_invalid"  # the card as a whole fails its checks
    INVALID_NUMBER = "invalid_number"  # not a card number (length, Luhn)
    INVALID_EXPIRY_MONTH = "invalid_expiry_month"
    INVALID_EXPIRY_YEAR = "invalid_expiry_year"
    EXPIRED_CARD = "expired_card"
    INVALID_CVC = "invalid_cvc"
    CARD_BRAND_NOT_SUPPORTED = "card_brand_not_supported"
