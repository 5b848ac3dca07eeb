"""Vault errors.

``CardInvalid`` and its leaves are refusals of card input (400, ``param`` names
the field); their messages never contain the number or the CVC.
``VaultIntegrityError`` is not the caller's fault: a sealed value did not open
(tampered, moved to another row, or its key is not in the keyring). It must
surface as a loud server error, never as "card declined".
"""

from django.core.exceptions import ImproperlyConfigured

from core.errors import InvalidRequest, NotFound


class CardInvalid(InvalidRequest):
    """Base of every refusal of card input."""

    code = "card_invalid"


class InvalidNumber(CardInvalid):
    """Not digits, wrong length for the brand, fails Luhn, or unsupported brand."""

    code = "invalid_number"


class InvalidExpiryMonth(CardInvalid):
    code = "invalid_expiry_month"


class InvalidExpiryYear(CardInvalid):
    code = "invalid_expiry_year"


class ExpiredCard(CardInvalid):
    code = "expired_card"


class InvalidCVC(CardInvalid):
    code = "invalid_cvc"


class TokenNotFound(NotFound):
    """No such token (or another merchant's: it does not exist for the caller)."""


class VaultConfigurationError(ImproperlyConfigured):
    """VAULT_KEYS / VAULT_FINGERPRINT_KEY / the key file are malformed."""


class VaultIntegrityError(Exception):
    """A sealed value failed to open. Never carries key material or plaintext."""


class UnknownKeyError(VaultIntegrityError):
    """The value was sealed under a key id that is not in the keyring."""
