import pickle
from datetime import date

import pytest
from django.db import IntegrityError, connection

from tests.factories import card_token
from vault.exceptions import InvalidNumber, TokenNotFound, VaultIntegrityError
from vault.models import Token
from vault.services import Card, detokenize, detokenize_many, token_is_expired

PAN = "4242424242424242"


@pytest.fixture(autouse=True)
def ring(use_ring):
    use_ring("k1")


def test_token_keeps_brand_last4_expiry_and_seals_the_number(merchant):
    token = card_token(merchant, "4242 4242 4242 4242", exp_month=3, exp_year=2031)
    token.refresh_from_db()
    assert (token.brand, token.last4, token.exp_month, token.exp_year) == (
        "visa",
        "4242",
        3,
        2031,
    )
    assert token.key_id == "k1"
    assert PAN.encode() not in bytes(token.ciphertext)


def test_detokenize_returns_the_card(merchant):
    token = card_token(merchant, "378282246310005", exp_month=1, exp_year=2030)
    assert detokenize(token_id=token.id) == Card(
        pan="378282246310005", exp_month=1, exp_year=2030, brand="amex", last4="0005"
    )


def test_detokenize_many_uses_one_query(merchant, django_assert_num_queries):
    tokens = [card_token(merchant, PAN) for _ in range(20)]
    with django_assert_num_queries(1):
        found = detokenize_many(t.id for t in tokens)
    assert set(found) == {t.id for t in tokens}
    assert {c.pan for c in found.values()} == {PAN}


def test_detokenize_many_of_nothing_makes_no_query(django_assert_num_queries, db):
    with django_assert_num_queries(0):
        assert detokenize_many([]) == {}


def test_detokenize_many_refuses_a_missing_token(merchant):
    token = card_token(merchant)
    with pytest.raises(TokenNotFound, match="tok_missing"):
        detokenize_many([token.id, "tok_missing"])


def test_ciphertext_copied_to_another_token_fails_loudly(merchant):
    a, b = card_token(merchant, PAN), card_token(merchant, "4000000000000002")
    Token.objects.filter(pk=b.pk).update(ciphertext=a.ciphertext, last4="4242")
    with pytest.raises(VaultIntegrityError):
        detokenize(token_id=b.id)


def test_token_moved_to_another_merchant_fails_loudly(merchant):
    token = card_token(merchant)
    Token.objects.filter(pk=token.pk).update(merchant_id="mer_other")
    with pytest.raises(VaultIntegrityError):
        detokenize(token_id=token.id)


def test_tampered_token_ciphertext_fails_loudly(merchant):
    token = card_token(merchant)
    blob = bytearray(bytes(token.ciphertext))
    blob[-1] ^= 0xFF
    Token.objects.filter(pk=token.pk).update(ciphertext=bytes(blob))
    with pytest.raises(VaultIntegrityError):
        detokenize(token_id=token.id)


def test_token_opens_only_under_the_key_that_sealed_it(merchant, use_ring):
    token = card_token(merchant)
    use_ring("k2")
    with pytest.raises(VaultIntegrityError):
        detokenize(token_id=token.id)


def test_invalid_card_writes_no_token(merchant):
    with pytest.raises(InvalidNumber):
        card_token(merchant, "4242424242424241")
    assert not Token.objects.exists()


def test_card_repr_and_str_mask_the_number():
    card = Card(pan=PAN, exp_month=12, exp_year=2030, brand="visa", last4="4242")
    for text in (repr(card), str(card), f"{card}", repr([card]), repr({"c": card})):
        assert PAN not in text
        assert "4242" in text


def test_card_refuses_to_be_pickled():
    card = Card(pan=PAN, exp_month=12, exp_year=2030, brand="visa", last4="4242")
    with pytest.raises(TypeError):
        pickle.dumps(card)


def test_card_is_immutable():
    card = Card(pan=PAN, exp_month=12, exp_year=2030, brand="visa", last4="4242")
    with pytest.raises(AttributeError):
        card.pan = "4000000000000002"


def test_token_is_expired_after_its_expiry_month(merchant):
    token = card_token(merchant, exp_month=6, exp_year=2031)
    assert not token_is_expired(token, today=date(2031, 6, 30))
    assert token_is_expired(token, today=date(2031, 7, 1))


def test_database_refuses_an_impossible_expiry_month(merchant):
    token = card_token(merchant)
    with pytest.raises(IntegrityError):
        Token.objects.filter(pk=token.pk).update(exp_month=13)


def test_no_table_has_a_cvc_column(db):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND (column_name ILIKE '%%cvc%%' "
            "OR column_name ILIKE '%%cvv%%' OR column_name ILIKE '%%security_code%%')"
        )
        assert cursor.fetchall() == []
