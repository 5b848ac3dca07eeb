import pytest
from django.contrib.auth.models import User

from tests.factories import card_token


@pytest.fixture
def admin_client(client, db):
    user = User.objects.create_superuser("ops", "ops@example.com", "pw-long-enough")
    client.force_login(user)
    return client


@pytest.fixture
def token(merchant, use_ring):
    use_ring("k1")
    return card_token(merchant, "4242424242424242")


def test_changelist_shows_masked_columns_only(admin_client, token):
    page = admin_client.get("/admin/vault/token/").content.decode()
    assert token.id in page and "4242" in page and "k1" in page
    assert "4242424242424242" not in page
    assert "ciphertext" not in page.lower()


def test_token_page_is_read_only_without_ciphertext(admin_client, token):
    response = admin_client.get(f"/admin/vault/token/{token.id}/change/")
    page = response.content.decode()
    assert response.status_code == 200
    assert "ciphertext" not in page.lower()
    assert 'name="_save"' not in page


def test_tokens_cannot_be_added_changed_or_deleted(admin_client, token):
    assert admin_client.get("/admin/vault/token/add/").status_code == 403
    response = admin_client.post(
        f"/admin/vault/token/{token.id}/change/", {"last4": "0000"}
    )
    assert response.status_code == 403
    assert admin_client.get(f"/admin/vault/token/{token.id}/delete/").status_code == 403


def test_search_by_fingerprint_finds_the_token(admin_client, token):
    page = admin_client.get(f"/admin/vault/token/?q={token.fingerprint}")
    assert token.id in page.content.decode()
