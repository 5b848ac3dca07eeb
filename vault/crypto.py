"""AES-256-GCM sealing under a versioned keyring, and keyed card fingerprints.

Sealed format, version 1 (self-describing, so rotation needs no side table)::

    0x01 | len(key_id) (1 byte) | key_id (ASCII) | nonce (12) | ciphertext | tag (16)

The associated data is the header (version and key id) plus a caller-supplied
``context`` naming the row, e.g. ``vault.token|tok_..|mer_..``: a value copied
onto another row, or whose key id byte was edited, fails to open.

Keys come from ``settings.VAULT_KEYS`` ("k2:<b64>,k1:<b64>": the first seals,
all open) and ``settings.VAULT_FINGERPRINT_KEY``; with neither set (development,
tests) from ``settings.VAULT_KEY_FILE``, generated on first use with mode 0600.
They are independent of SECRET_KEY. The parsed keyring is cached per process;
``reset_keyring()`` (also run on ``setting_changed``) drops it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from vault.exceptions import (
    UnknownKeyError,
    VaultConfigurationError,
    VaultIntegrityError,
)

logger = logging.getLogger(__name__)

VERSION = 1
KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
KEY_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_AAD_PREFIX = b"surge.vault"


class Keyring:
    """Sealing keys by id (``active_id`` seals) and the fingerprint key.

    Its repr names key ids only; key bytes never leave this object.
    """

    __slots__ = ("_aeads", "_fingerprint_key", "active_id", "source")

    def __init__(
        self,
        *,
        active_id: str,
        keys: Mapping[str, bytes],
        fingerprint_key: bytes,
        source: str,
    ):
        if active_id not in keys:
            raise VaultConfigurationError("The active vault key is not in the ring.")
        self.active_id = active_id
        self.source = source
        self._aeads = {kid: AESGCM(key) for kid, key in keys.items()}
        self._fingerprint_key = fingerprint_key

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._aeads)

    def aead(self, key_id: str) -> AESGCM:
        try:
            return self._aeads[key_id]
        except KeyError:
            raise UnknownKeyError(
                f"Vault key {key_id!r} is not in the keyring {list(self._aeads)}."
            ) from None

    def hmac(self, message: bytes) -> str:
        return hmac.new(self._fingerprint_key, message, hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return (
            f"Keyring(active={self.active_id!r}, ids={list(self._aeads)!r}, "
            f"source={self.source!r})"
        )


# --- configuration -----------------------------------------------------------


def decode_key(text: str, *, what: str) -> bytes:
    """Standard or URL-safe base64 of exactly 32 bytes; the error omits the text."""
    raw = text.strip().replace("-", "+").replace("_", "/")
    raw += "=" * (-len(raw) % 4)
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_SIZE:
        raise VaultConfigurationError(f"{what} must be base64 of {KEY_SIZE} bytes.")
    return key


def parse_keys(spec: str) -> tuple[str, dict[str, bytes]]:
    """Parse ``"k2:<b64>,k1:<b64>"`` into (active id, {id: key})."""
    keys: dict[str, bytes] = {}
    for n, entry in enumerate(spec.split(","), start=1):
        kid, sep, b64 = entry.strip().partition(":")
        if not sep or not KEY_ID_RE.fullmatch(kid):
            raise VaultConfigurationError(
                f"VAULT_KEYS entry {n} must be '<id>:<base64 key>' with an id of "
                "1-32 letters, digits, '_', '.' or '-'."
            )
        if kid in keys:
            raise VaultConfigurationError(f"VAULT_KEYS lists key id {kid!r} twice.")
        keys[kid] = decode_key(b64, what=f"VAULT_KEYS key {kid!r}")
    return next(iter(keys)), keys


def _key_file_text() -> str:
    kid = f"local-{secrets.token_hex(3)}"
    seal_key = base64.b64encode(secrets.token_bytes(KEY_SIZE)).decode()
    fp_key = base64.b64encode(secrets.token_bytes(KEY_SIZE)).decode()
    return (
        "# Surge vault keys (embedded default). Secret: never commit or share.\n"
        "# To move to environment configuration, export these two lines as they\n"
        "# are; to rotate, put a new key first in VAULT_KEYS and keep this one\n"
        "# after it until `manage.py rotate_vault_keys` has run.\n"
        f"VAULT_KEYS={kid}:{seal_key}\n"
        f"VAULT_FINGERPRINT_KEY={fp_key}\n"
    )


def _create_key_file(path: Path) -> None:
    """Write the file whole under a temporary name, then link it into place.

    ``link`` fails if the file exists, so concurrent first runs (xdist workers,
    web and worker processes) agree on one file and nobody reads half of one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(_key_file_text())
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
            logger.warning(
                "vault: generated embedded keys at %s (development only)", path
            )
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)


def _read_key_file(path: Path) -> tuple[str, str]:
    if not path.exists():
        _create_key_file(path)
    if path.stat().st_mode & 0o077:
        logger.warning("vault: key file %s is readable by others; chmod 600", path)
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            values[name.strip()] = value.strip()
    if "VAULT_KEYS" not in values or "VAULT_FINGERPRINT_KEY" not in values:
        raise VaultConfigurationError(
            f"Vault key file {path} must define VAULT_KEYS and VAULT_FINGERPRINT_KEY."
        )
    return values["VAULT_KEYS"], values["VAULT_FINGERPRINT_KEY"]


def load_keyring() -> Keyring:
    """Build the keyring from settings (or the key file), without caching."""
    spec = settings.VAULT_KEYS
    fp = settings.VAULT_FINGERPRINT_KEY
    if bool(spec) != bool(fp):
        raise VaultConfigurationError(
            "Set both VAULT_KEYS and VAULT_FINGERPRINT_KEY, or neither (embedded "
            "key file)."
        )
    source = "env"
    if not spec:
        path = Path(settings.VAULT_KEY_FILE)
        spec, fp = _read_key_file(path)
        source = str(path)
    active_id, keys = parse_keys(spec)
    return Keyring(
        active_id=active_id,
        keys=keys,
        fingerprint_key=decode_key(fp, what="VAULT_FINGERPRINT_KEY"),
        source=source,
    )


_keyring: Keyring | None = None
_keyring_lock = threading.Lock()


def get_keyring() -> Keyring:
    global _keyring
    ring = _keyring
    if ring is None:
        with _keyring_lock:
            if _keyring is None:
                _keyring = load_keyring()
            ring = _keyring
    return ring


def reset_keyring() -> None:
    """Forget the cached keyring; the next use re-reads settings."""
    global _keyring
    with _keyring_lock:
        _keyring = None


@receiver(setting_changed, dispatch_uid="vault.crypto.reset_keyring")
def _on_setting_changed(*, setting: str, **kwargs) -> None:
    if setting in {"VAULT_KEYS", "VAULT_FINGERPRINT_KEY", "VAULT_KEY_FILE"}:
        reset_keyring()


# --- sealing -----------------------------------------------------------------


def _header(key_id: str) -> bytes:
    kid = key_id.encode("ascii")
    return bytes([VERSION, len(kid)]) + kid


def _aad(header: bytes, context: str) -> bytes:
    return b"|".join([_AAD_PREFIX, header, context.encode("utf-8")])


def _split(blob: bytes) -> tuple[bytes, str, bytes, bytes]:
    """(header, key id, nonce, ciphertext+tag); raises on a malformed value."""
    if len(blob) < 2 or blob[0] != VERSION:
        raise VaultIntegrityError("Sealed value has an unknown format version.")
    end = 2 + blob[1]
    if len(blob) < end + NONCE_SIZE + TAG_SIZE:
        raise VaultIntegrityError("Sealed value is truncated.")
    try:
        key_id = blob[2:end].decode("ascii")
    except UnicodeDecodeError:
        raise VaultIntegrityError("Sealed value has a malformed key id.") from None
    return blob[:end], key_id, blob[end : end + NONCE_SIZE], blob[end + NONCE_SIZE :]


def key_id_of(blob: bytes | memoryview) -> str:
    """The id of the key that sealed ``blob`` (no decryption)."""
    return _split(bytes(blob))[1]


def seal(plaintext: bytes, *, context: str, keyring: Keyring | None = None) -> bytes:
    """Encrypt under the active key, bound to ``context``."""
    ring = keyring or get_keyring()
    header = _header(ring.active_id)
    nonce = os.urandom(NONCE_SIZE)
    body = ring.aead(ring.active_id).encrypt(nonce, plaintext, _aad(header, context))
    return header + nonce + body


def unseal(
    blob: bytes | memoryview, *, context: str, keyring: Keyring | None = None
) -> bytes:
    """Decrypt, or raise VaultIntegrityError (tampered, wrong row, wrong key)."""
    ring = keyring or get_keyring()
    header, key_id, nonce, body = _split(bytes(blob))
    try:
        return ring.aead(key_id).decrypt(nonce, body, _aad(header, context))
    except InvalidTag:
        raise VaultIntegrityError(
            f"Sealed value for {context!r} did not open under key {key_id!r}: "
            "tampered, copied from another row, or the key is not the one that "
            "sealed it."
        ) from None


def reseal(
    blob: bytes | memoryview, *, context: str, keyring: Keyring | None = None
) -> bytes | None:
    """``blob`` sealed under the active key, or None if it already is."""
    ring = keyring or get_keyring()
    if key_id_of(blob) == ring.active_id:
        return None
    return seal(
        unseal(blob, context=context, keyring=ring), context=context, keyring=ring
    )


def seal_text(value: str, *, context: str) -> bytes:
    return seal(value.encode("utf-8"), context=context)


def unseal_text(blob: bytes | memoryview, *, context: str) -> str:
    return unseal(blob, context=context).decode("utf-8")


def card_fingerprint(pan: str, *, merchant_id: str) -> str:
    """HMAC-SHA256 of the PAN under the fingerprint key, scoped to one merchant.

    Scoping means a merchant can match its own repeat customers but cannot learn
    that a card was used at another merchant. The fingerprint key is not rotated
    by ``rotate_vault_keys``: changing it changes every fingerprint.
    """
    message = b"fp1|" + merchant_id.encode("utf-8") + b"|" + pan.encode("ascii")
    return get_keyring().hmac(message)
