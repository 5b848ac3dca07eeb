import base64
import os

import pytest

from vault.crypto import reset_keyring


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def luhn_complete(prefix: str) -> str:
    """``prefix`` plus the check digit that makes it Luhn-valid."""
    from vault.cards import luhn_ok

    return next(prefix + d for d in "0123456789" if luhn_ok(prefix + d))


@pytest.fixture(autouse=True)
def _fresh_keyring():
    reset_keyring()
    yield
    reset_keyring()


@pytest.fixture
def keys() -> dict[str, str]:
    return {"k1": new_key(), "k2": new_key(), "k3": new_key(), "fp": new_key()}


@pytest.fixture
def use_ring(settings, keys):
    """``use_ring("k2", "k1")``: k2 seals, both open (settings change resets)."""

    def apply(*key_ids: str) -> None:
        settings.VAULT_KEYS = ",".join(f"{kid}:{keys[kid]}" for kid in key_ids)
        settings.VAULT_FINGERPRINT_KEY = keys["fp"]

    return apply
