import base64
import contextlib
import logging
import os
import sys

import pytest

from vault.crypto import reset_keyring


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def luhn_complete(prefix: str) -> str:
    """``prefix`` plus the check digit that makes it Luhn-valid."""
    from core.pan import luhn_ok

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


@contextlib.contextmanager
def console_to_current_stderr():
    """Point the root console handler(s) from settings.LOGGING at sys.stderr now.

    Call it inside the test body: there ``sys.stderr`` is capsys's stream.
    """
    from core.pan import RedactPANFilter

    console = [
        h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler
    ]
    assert console, "settings.LOGGING should install a console handler on root"
    assert all(any(isinstance(f, RedactPANFilter) for f in h.filters) for h in console)
    old = [h.stream for h in console]
    for h in console:
        h.stream = sys.stderr
    try:
        yield
    finally:
        for h, stream in zip(console, old, strict=True):
            h.stream = stream
