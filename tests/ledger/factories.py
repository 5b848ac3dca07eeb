import factory

from payments.models import Payment
from tests.factories import MerchantFactory, TokenFactory


class PaymentFactory(factory.django.DjangoModelFactory):
    """A payment row as the pipeline leaves it; ``status`` defaults to settled."""

    class Meta:
        model = Payment

    merchant = factory.SubFactory(MerchantFactory)
    source = factory.LazyAttribute(lambda o: TokenFactory(merchant_id=o.merchant.id))
    amount = 1000
    currency = "usd"
    status = "settled"
    gateway = "sandbox"
    gateway_reference = factory.Sequence(lambda n: f"ch_{n:08d}")
    fee = 59
