"""``field__any_of``: the same rows as ``__in``, with one parameter."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from payments.models import Merchant, Payment
from tests.factories import MerchantFactory

pytestmark = pytest.mark.django_db


def ids_of(queryset) -> list[str]:
    return sorted(queryset.values_list("id", flat=True))


def test_any_of_finds_what_in_finds():
    merchants = MerchantFactory.create_batch(6)
    wanted = [m.id for m in merchants[:4]] + ["mer_missing", merchants[0].id]
    assert ids_of(Merchant.objects.filter(pk__any_of=wanted)) == ids_of(
        Merchant.objects.filter(pk__in=wanted)
    )
    assert len(ids_of(Merchant.objects.filter(pk__any_of=wanted))) == 4


def test_any_of_nothing_finds_nothing():
    MerchantFactory()
    assert ids_of(Merchant.objects.filter(pk__any_of=[])) == []


def test_any_of_sends_one_parameter_however_many_ids():
    ids = [f"pay_{i}" for i in range(500)]
    with CaptureQueriesContext(connection) as ctx:
        list(Payment.objects.filter(pk__any_of=ids, status="pending"))
    sql = ctx.captured_queries[-1]["sql"]
    assert "::text[]" in sql
    assert sql.count("pay_") == 500  # all in the one joined text
    assert "IN (" not in sql


ODD = ["a,b", 'say "hi"', "back\\slash", "{x}", " ", "NULL", "", "a'b", "é"]


def test_any_value_matches_exactly_whatever_it_holds():
    for odd in ODD:
        MerchantFactory(id=odd)
    MerchantFactory(id="a")
    MerchantFactory(id="b")
    for odd in ODD:
        assert ids_of(Merchant.objects.filter(pk__any_of=[odd])) == [odd]
    assert ids_of(Merchant.objects.filter(pk__any_of=ODD)) == sorted(ODD)
