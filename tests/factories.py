import factory

from payments.models import Merchant
from vault.models import Token


class MerchantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Merchant

    name = factory.Sequence(lambda n: f"Merchant {n}")


class TokenFactory(factory.django.DjangoModelFactory):
    """A token row without a real card behind it: for tests that never charge."""

    class Meta:
        model = Token

    merchant_id = factory.LazyAttribute(lambda o: MerchantFactory().id)
    brand = "visa"
    last4 = "4242"
    exp_month = 12
    exp_year = 2099
    fingerprint = factory.Sequence(lambda n: f"{n:064x}")
    key_id = "test"
    ciphertext = b"not-a-real-ciphertext"


def card_token(
    merchant,
    number: str = "4242424242424242",
    *,
    exp_month: int = 12,
    exp_year: int | None = None,
    cvc: str | None = None,
) -> Token:
    """A real token sealed by the vault (detokenize works), for a Merchant or id."""
    from django.utils import timezone

    from vault.cards import CardBrand, card_brand
    from vault.services import token_create

    if cvc is None:
        cvc = "1234" if card_brand(number.replace(" ", "")) == CardBrand.AMEX else "123"
    return token_create(
        merchant_id=getattr(merchant, "id", merchant),
        number=number,
        exp_month=exp_month,
        exp_year=exp_year or timezone.now().year + 5,
        cvc=cvc,
    )
