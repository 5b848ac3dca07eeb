"""The vault's BIN data: a token keeps its BIN, and a batch of BINs is looked
up in one query, the narrowest range winning."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.factories import card_token
from vault.models import BinRange
from vault.selectors import CardMetadata, bins_lookup

pytestmark = pytest.mark.django_db


def test_a_token_keeps_the_first_six_digits_and_nothing_more(merchant):
    token = card_token(merchant, "4242424242424242")
    assert token.bin == "424242" and token.last4 == "4242"


def test_the_seeded_test_ranges_say_brand_funding_and_country():
    found = bins_lookup(["424242", "400005", "510510", "411111", "378282"])
    assert found == {
        "424242": CardMetadata("visa", "credit", "US"),
        "400005": CardMetadata("visa", "debit", "US"),
        "510510": CardMetadata("mastercard", "prepaid", "US"),
        "411111": CardMetadata("visa", "credit", "GB"),
        "378282": CardMetadata("amex", "credit", "US"),
    }


def test_the_narrowest_range_wins_and_an_unknown_bin_is_absent():
    BinRange.objects.create(low=401200, high=401299, brand="visa", funding="debit")
    found = bins_lookup(["401288", "401300", "999999", "", "12ab56"])
    assert found == {
        "401288": CardMetadata("visa", "debit", ""),
        "401300": CardMetadata("visa", "", ""),  # the brand-wide range only
    }


def test_a_batch_of_bins_is_one_query():
    with CaptureQueriesContext(connection) as one:
        bins_lookup(["424242"])
    with CaptureQueriesContext(connection) as many:
        bins_lookup([f"{n:06d}" for n in range(400000, 400500)])
    assert len(one.captured_queries) == len(many.captured_queries) == 1
    with CaptureQueriesContext(connection) as none:
        assert bins_lookup([]) == {}
    assert len(none.captured_queries) == 0


def test_the_database_refuses_a_range_that_is_not_six_digits():
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        BinRange.objects.create(low=4000, high=4999, brand="visa")
    with pytest.raises(IntegrityError), transaction.atomic():
        BinRange.objects.create(low=500000, high=400000, brand="visa")
