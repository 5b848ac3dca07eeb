import os
import stat
import threading

import pytest

from tests.vault.conftest import new_key
from vault import crypto
from vault.exceptions import (
    UnknownKeyError,
    VaultConfigurationError,
    VaultIntegrityError,
)


@pytest.fixture
def ring(use_ring):
    use_ring("k2", "k1")
    return crypto.get_keyring()


def test_seal_then_unseal_returns_the_plaintext(ring):
    blob = crypto.seal(b"4242424242424242", context="row-1")
    assert crypto.unseal(blob, context="row-1") == b"4242424242424242"


def test_sealed_value_names_its_key_and_hides_the_plaintext(ring):
    blob = crypto.seal(b"4242424242424242", context="row-1")
    assert blob[0] == crypto.VERSION
    assert crypto.key_id_of(blob) == "k2"
    assert b"4242" not in blob


def test_sealing_twice_gives_different_ciphertexts(ring):
    assert crypto.seal(b"x", context="c") != crypto.seal(b"x", context="c")


def test_tampered_ciphertext_fails_loudly(ring):
    blob = bytearray(crypto.seal(b"4242424242424242", context="row-1"))
    blob[-20] ^= 0x01
    with pytest.raises(VaultIntegrityError):
        crypto.unseal(bytes(blob), context="row-1")


def test_edited_key_id_fails_loudly(use_ring):
    use_ring("k1", "k2")
    blob = crypto.seal(b"secret", context="c")
    forged = blob.replace(b"k1", b"k2", 1)
    with pytest.raises(VaultIntegrityError):
        crypto.unseal(forged, context="c")


def test_value_moved_to_another_context_fails_loudly(ring):
    blob = crypto.seal(b"4242424242424242", context="row-1")
    with pytest.raises(VaultIntegrityError):
        crypto.unseal(blob, context="row-2")


def test_wrong_key_with_the_same_id_fails_loudly(settings, keys, use_ring):
    use_ring("k1")
    blob = crypto.seal(b"secret", context="c")
    settings.VAULT_KEYS = f"k1:{new_key()}"
    with pytest.raises(VaultIntegrityError):
        crypto.unseal(blob, context="c")


def test_key_missing_from_the_ring_fails_with_unknown_key(use_ring):
    use_ring("k1")
    blob = crypto.seal(b"secret", context="c")
    use_ring("k2")
    with pytest.raises(UnknownKeyError, match="k1"):
        crypto.unseal(blob, context="c")


def test_truncated_value_fails_loudly(ring):
    with pytest.raises(VaultIntegrityError):
        crypto.unseal(crypto.seal(b"x", context="c")[:10], context="c")


def test_old_key_still_opens_after_a_new_key_is_put_first(use_ring):
    use_ring("k1")
    blob = crypto.seal(b"secret", context="c")
    use_ring("k2", "k1")
    assert crypto.unseal(blob, context="c") == b"secret"
    assert crypto.key_id_of(crypto.seal(b"secret", context="c")) == "k2"


def test_reseal_moves_a_value_to_the_active_key(use_ring):
    use_ring("k1")
    blob = crypto.seal(b"secret", context="c")
    use_ring("k2", "k1")
    new = crypto.reseal(blob, context="c")
    assert crypto.key_id_of(new) == "k2"
    assert crypto.reseal(new, context="c") is None


def test_keyring_is_cached_until_reset(use_ring):
    use_ring("k1")
    first = crypto.get_keyring()
    assert crypto.get_keyring() is first
    crypto.reset_keyring()
    assert crypto.get_keyring() is not first


def test_keyring_repr_names_ids_but_not_key_bytes(ring, keys):
    text = repr(ring)
    assert "k2" in text and "k1" in text
    assert keys["k1"] not in text and keys["k2"] not in text


@pytest.mark.parametrize(
    "spec",
    ["k1", "k1:not-base64!", "k1:" + "QUJD", "k 1:{key}", "k1:{key},k1:{key}"],
    ids=["no-colon", "bad-base64", "short-key", "bad-id", "duplicate-id"],
)
def test_malformed_vault_keys_are_refused_without_echoing_them(settings, spec):
    key = new_key()
    settings.VAULT_KEYS = spec.format(key=key)
    settings.VAULT_FINGERPRINT_KEY = new_key()
    with pytest.raises(VaultConfigurationError) as info:
        crypto.get_keyring()
    assert key not in str(info.value)


def test_vault_keys_without_fingerprint_key_are_refused(settings):
    settings.VAULT_KEYS = f"k1:{new_key()}"
    settings.VAULT_FINGERPRINT_KEY = None
    with pytest.raises(VaultConfigurationError, match="both"):
        crypto.get_keyring()


def test_urlsafe_base64_keys_are_accepted(settings):
    raw = os.urandom(32)
    import base64

    settings.VAULT_KEYS = "k1:" + base64.urlsafe_b64encode(raw).decode().rstrip("=")
    settings.VAULT_FINGERPRINT_KEY = new_key()
    assert crypto.get_keyring().active_id == "k1"


@pytest.fixture
def key_file(settings, tmp_path):
    settings.VAULT_KEYS = None
    settings.VAULT_FINGERPRINT_KEY = None
    settings.VAULT_KEY_FILE = tmp_path / "var" / "vault_keys"
    return settings.VAULT_KEY_FILE


def test_embedded_default_creates_a_key_file_readable_only_by_its_owner(key_file):
    ring = crypto.get_keyring()
    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert ring.active_id.startswith("local-")
    assert ring.source == str(key_file)


def test_embedded_key_file_is_reused_across_processes(key_file):
    blob = crypto.seal(b"secret", context="c")
    fingerprint = crypto.card_fingerprint("4242424242424242", merchant_id="mer_1")
    crypto.reset_keyring()  # what a new process does
    assert crypto.unseal(blob, context="c") == b"secret"
    assert crypto.card_fingerprint("4242424242424242", merchant_id="mer_1") == (
        fingerprint
    )


def test_embedded_keys_are_not_derived_from_secret_key(key_file, settings):
    crypto.get_keyring()
    assert settings.SECRET_KEY not in key_file.read_text()


def test_concurrent_first_runs_agree_on_one_key_file(key_file):
    rings = []

    def load():
        rings.append(crypto.load_keyring())

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.active_id for r in rings}) == 1
    assert [p.name for p in key_file.parent.iterdir()] == ["vault_keys"]


def test_fingerprint_is_stable_across_sealing_key_rotation(use_ring):
    use_ring("k1")
    before = crypto.card_fingerprint("4242424242424242", merchant_id="mer_1")
    use_ring("k2", "k1")
    after = crypto.card_fingerprint("4242424242424242", merchant_id="mer_1")
    assert before == after and len(before) == 64


def test_fingerprint_differs_between_merchants_and_cards(ring):
    fp = crypto.card_fingerprint
    assert fp("4242424242424242", merchant_id="mer_1") != fp(
        "4242424242424242", merchant_id="mer_2"
    )
    assert fp("4242424242424242", merchant_id="mer_1") != fp(
        "4000000000000002", merchant_id="mer_1"
    )


def test_fingerprint_is_keyed_not_a_plain_hash(ring):
    import hashlib

    value = crypto.card_fingerprint("4242424242424242", merchant_id="mer_1")
    assert value != hashlib.sha256(b"4242424242424242").hexdigest()
