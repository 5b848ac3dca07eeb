"""Vault errors.

``CardInvalid`` and its leaves are refusals of card input (400, ``param`` names
the field); their messages never contain the number or the CVC.
``VaultIntegrityError`` is not the caller's fault: a sealed value did not open
(tampered, moved to another row, or its key is not in the keyring). It must
surface as a loud server error, never as "card declined".
"""

from django.core.exceptions import ImproperlyConfigured

from core.errors import InvalidRequest, NotFound
from vault.error_codes import ErrorCode


class CardInvalid(InvalidRequest):
    """Base of every refusal of card input."""

    code = ErrorCode.CARD_INVALID


class InvalidNumber(CardInvalid):
    """Not digits, wrong length for the brand, fails Luhn, or unsupported brand."""

    code = ErrorCode.INVALID_NUMBER


class InvalidExpiryMonth(CardInvalid):
    code = ErrorCode.INVALID_EXPIRY_MONTH


class InvalidExpiryYear(CardInvalid):
    code = ErrorCode.INVALID_EXPIRY_YEAR


class ExpiredCard(CardInvalid):
    code = ErrorCode.EXPIRED_CARD


class InvalidCVC(CardInvalid):
    code = ErrorCode.INVALID_CVC


class TokenNotFound(NotFound):
    """No such token (or another merchant's: it does not exist for the caller)."""


class VaultConfigurationError(ImproperlyConfigured):
    """VAULT_KEYS / VAULT_FINGERPRINT_KEY / the key file are malformed."""


class VaultIntegrityError(Exception):
    """A sealed value failed to open. Never carries key material or plaintext."""


class UnknownKeyError(VaultIntegrityError):
    """The value was sealed under a key id that is not in the keyring."""
