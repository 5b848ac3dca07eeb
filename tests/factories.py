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
