import threading
import time

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from tests.factories import card_token
from tests.vault.conftest import luhn_complete
from vault.crypto import key_id_of
from vault.exceptions import VaultIntegrityError
from vault.models import Token
from vault.services import detokenize_many


def rotate(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("rotate_vault_keys", "--no-progress", *args, stdout=out)
    return out.getvalue()


def pans(n: int) -> list[str]:
    return [luhn_complete(f"4{i:014d}") for i in range(n)]


def test_tokens_sealed_under_k1_open_after_rotating_to_k2_without_k1(
    merchant, use_ring
):
    use_ring("k1")
    numbers = pans(7)
    tokens = [card_token(merchant, n) for n in numbers]
    use_ring("k2", "k1")
    out = rotate("--batch-size", "3")
    assert "Re-sealed 7 values under key 'k2'" in out
    assert "can be removed" in out
    use_ring("k2")
    cards = detokenize_many(t.id for t in tokens)
    assert [cards[t.id].pan for t in tokens] == numbers
    assert set(Token.objects.values_list("key_id", flat=True)) == {"k2"}
    for blob in Token.objects.values_list("ciphertext", flat=True):
        assert key_id_of(blob) == "k2"


def test_rotation_touches_only_rows_not_under_the_active_key(merchant, use_ring):
    use_ring("k1")
    old = card_token(merchant)
    use_ring("k2", "k1")
    new = card_token(merchant)
    before = bytes(Token.objects.get(pk=new.pk).ciphertext)
    assert "Re-sealed 1 values" in rotate()
    assert bytes(Token.objects.get(pk=new.pk).ciphertext) == before
    assert Token.objects.get(pk=old.pk).key_id == "k2"


def test_rerunning_a_finished_rotation_changes_nothing(merchant, use_ring):
    use_ring("k1")
    card_token(merchant)
    use_ring("k2", "k1")
    rotate()
    assert "Re-sealed 0 values" in rotate()


def test_dry_run_writes_nothing(merchant, use_ring):
    use_ring("k1")
    card_token(merchant)
    use_ring("k2", "k1")
    assert "Would re-seal 1 values" in rotate("--dry-run")
    assert set(Token.objects.values_list("key_id", flat=True)) == {"k1"}


def test_rotation_reports_rows_that_do_not_open_and_rotates_the_rest(
    merchant, use_ring
):
    use_ring("k1")
    good, bad = card_token(merchant), card_token(merchant)
    Token.objects.filter(pk=bad.pk).update(merchant_id="mer_tampered")
    use_ring("k2", "k1")
    with pytest.raises(CommandError, match=bad.id):
        rotate()
    assert Token.objects.get(pk=good.pk).key_id == "k2"
    assert Token.objects.get(pk=bad.pk).key_id == "k1"


def test_rotation_skips_a_row_changed_after_it_was_read(merchant, use_ring):
    """The conditional update: a concurrent re-seal is not overwritten."""
    from vault import services

    use_ring("k1")
    token = card_token(merchant)
    use_ring("k2", "k1")
    real_seal = services.seal

    def seal_and_race(*args, **kwargs):
        Token.objects.filter(pk=token.pk).update(key_id="k3")
        return real_seal(*args, **kwargs)

    services.seal = seal_and_race
    try:
        steps = list(services.rotate_keys(models_with_fields=[]))
    finally:
        services.seal = real_seal
    assert (steps[0].resealed, steps[0].skipped) == (0, 1)
    assert Token.objects.get(pk=token.pk).key_id == "k3"


def test_zero_batch_size_is_refused(db):
    with pytest.raises(CommandError):
        rotate("--batch-size", "0")


@pytest.mark.django_db(transaction=True)
def test_reads_during_rotation_all_succeed(merchant, use_ring):
    use_ring("k1")
    numbers = pans(300)
    tokens = [card_token(merchant, n) for n in numbers]
    expected = {t.id: n for t, n in zip(tokens, numbers, strict=True)}
    use_ring("k2", "k1")
    done = threading.Event()
    errors: list[BaseException] = []
    reads = [0]

    def reader():
        try:
            while not done.is_set():
                cards = detokenize_many(expected)
                assert {k: c.pan for k, c in cards.items()} == expected
                reads[0] += 1
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.05)
        out = rotate("--batch-size", "25")
        time.sleep(0.05)
    finally:
        done.set()
        for t in threads:
            t.join(timeout=30)
    assert errors == []
    assert reads[0] > 4
    assert "Re-sealed 300 values" in out
    use_ring("k2")
    assert {k: c.pan for k, c in detokenize_many(expected).items()} == expected


def test_without_the_old_key_unrotated_tokens_fail_loudly(merchant, use_ring):
    use_ring("k1")
    token = card_token(merchant)
    use_ring("k2")
    with pytest.raises(VaultIntegrityError):
        detokenize_many([token.id])


def test_progress_bar_and_summary_are_printed(merchant, use_ring, capsys):
    from io import StringIO

    use_ring("k1")
    card_token(merchant)
    use_ring("k2", "k1")
    out = StringIO()
    call_command("rotate_vault_keys", stdout=out)
    assert "Re-sealed 1 values" in out.getvalue()
    assert "re-sealing under k2" in capsys.readouterr().err
