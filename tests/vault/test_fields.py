import pytest
from django.db import connection, models
from django.test.utils import isolate_apps

from core.ids import new_id
from vault.crypto import key_id_of
from vault.exceptions import VaultIntegrityError
from vault.fields import EncryptedTextField, Sealed
from vault.services import rotate_keys


@pytest.fixture
def Secret(db, use_ring):
    use_ring("k1")
    with isolate_apps("vault"):

        class Secret(models.Model):  # noqa: DJ008
            id = models.CharField(
                primary_key=True, max_length=40, default=lambda: new_id("wh")
            )
            value = EncryptedTextField(null=True)

            class Meta:
                app_label = "vault"
                db_table = "vault_test_secret"

    with connection.schema_editor() as editor:
        editor.create_model(Secret)
    return Secret


def stored(Secret, pk) -> bytes:
    return Secret.objects.filter(pk=pk).values_list("value", flat=True).get()


def test_value_round_trips_and_is_stored_sealed(Secret):
    row = Secret.objects.create(value="whsec_topsecret")
    assert Secret.objects.get(pk=row.pk).value == "whsec_topsecret"
    blob = stored(Secret, row.pk)
    assert isinstance(blob, Sealed) and b"topsecret" not in blob
    assert key_id_of(blob) == "k1"


def test_saving_again_keeps_the_sealed_bytes(Secret):
    row = Secret.objects.create(value="s")
    before = stored(Secret, row.pk)
    Secret.objects.get(pk=row.pk).save()
    assert stored(Secret, row.pk) == before


def test_null_stays_null(Secret):
    row = Secret.objects.create(value=None)
    assert Secret.objects.get(pk=row.pk).value is None


def test_value_copied_to_another_row_fails_loudly(Secret):
    a, b = Secret.objects.create(value="a"), Secret.objects.create(value="b")
    Secret.objects.filter(pk=b.pk).update(value=stored(Secret, a.pk))
    with pytest.raises(VaultIntegrityError):
        Secret.objects.get(pk=b.pk).value  # noqa: B018


def test_queryset_update_with_plaintext_is_refused(Secret):
    row = Secret.objects.create(value="a")
    with pytest.raises(TypeError, match="save"):
        Secret.objects.filter(pk=row.pk).update(value="b")


def test_assigning_bytes_is_refused(Secret):
    with pytest.raises(TypeError):
        Secret(value=b"raw")


def test_rotation_reseals_encrypted_fields_with_the_keyring(Secret, use_ring):
    rows = [Secret.objects.create(value=f"secret-{i}") for i in range(5)]
    use_ring("k2", "k1")
    steps = list(
        rotate_keys(
            batch_size=2,
            models_with_fields=[(Secret, [Secret._meta.get_field("value")])],
        )
    )
    assert sum(s.resealed for s in steps) == 5
    use_ring("k2")
    for i, row in enumerate(rows):
        assert Secret.objects.get(pk=row.pk).value == f"secret-{i}"
        assert key_id_of(stored(Secret, row.pk)) == "k2"
