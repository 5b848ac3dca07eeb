"""The enrich stage in-process (real PostgreSQL, sandbox gateway, the broker a
real Redis database): card metadata, route, fee quote, and each risk rule
and outcome, evaluated a batch at a time."""

from datetime import timedelta

import pytest
from django.utils import timezone

from ledger.models import Posting
from ledger.services import FEES, fee_for
from payments.models import DeadLetter, Event, Payment, VelocityEntry
from payments.services import enrich, pipeline, sweeper
from payments.services.enrich import enrich_batch
from payments.state import PaymentStatus as S
from payments.workflow import PAYMENT_STEPS
from tests.factories import TokenFactory, card_token
from tests.payments.test_relay import broker, published_ids  # noqa: F401
from vault.models import Token

pytestmark = pytest.mark.django_db

VISA_US = "4242424242424242"  # seeded BIN 424242: visa credit US
VISA_GB = "4111111111111111"  # seeded BIN 411111: visa credit GB
VISA_DEBIT = "4000056655665556"  # seeded BIN 400005: visa debit US


def pay(merchant, token, amount=1000, n=1, customer="", **fields):
    made = [
        Payment.objects.create(
            merchant=merchant, amount=amount, currency="usd", source=token,
            customer=customer, **fields,
        )
        for _ in range(n)
    ]  # fmt: skip
    return made if n > 1 else made[0]


def validated(*payments):
    ids = [p.pk for p in payments]
    assert pipeline.validate_batch(ids)["validated"] == len(ids)
    return ids


def rules(merchant, **fields):
    for name, value in fields.items():
        setattr(merchant, f"risk_{name}", value)
    merchant.save()


def statuses(ids):
    by_id = dict(Payment.objects.filter(pk__in=ids).values_list("pk", "status"))
    return [by_id[i] for i in ids]


def verdict(payment):
    payment.refresh_from_db()
    return payment.enrichment["risk"]


# --- what enrich attaches ------------------------------------------------------


def test_enrich_attaches_card_route_fee_and_an_allow_then_hands_on(
    merchant,
    broker,  # noqa: F811
):
    merchant.secondary_gateway = "simulator"
    merchant.save()
    payment = pay(merchant, card_token(merchant, VISA_US), amount=12345)
    ids = validated(payment)
    assert enrich_batch(ids) == {"enriched": 1, "review": 0, "blocked": 0}
    payment.refresh_from_db()
    assert payment.status == S.ENRICHED
    assert payment.enrichment["card"] == {
        "brand": "visa",
        "funding": "credit",
        "country": "US",
    }
    route = payment.enrichment["route"]
    assert (route["gateway"], route["failover"]) == ("sandbox", "simulator")
    assert route["reason"] == "merchant_primary"
    assert payment.enrichment["risk"] == {"outcome": "allow", "rule": None}
    assert payment.fee == fee_for(amount=12345, fee_bps=290, fee_fixed=30)
    assert Event.objects.filter(payment=payment, type="payment.enriched").count() == 1
    assert published_ids(broker, PAYMENT_STEPS[S.ENRICHED].queue) == [payment.pk]


def test_card_metadata_comes_from_the_narrowest_bin_range(merchant):
    debit = pay(merchant, card_token(merchant, VISA_DEBIT))
    brand_only = pay(merchant, card_token(merchant, "4012888888881881"))
    legacy = pay(merchant, card_token(merchant, VISA_US))
    Token.objects.filter(pk=legacy.source_id).update(bin="")  # made before BINs
    enrich_batch(validated(debit, brand_only, legacy))
    cards = {
        p.pk: p.enrichment["card"]
        for p in Payment.objects.filter(pk__in=[debit.pk, brand_only.pk, legacy.pk])
    }
    assert cards[debit.pk] == {"brand": "visa", "funding": "debit", "country": "US"}
    # Only the brand-wide Visa range holds 401288: the brand, nothing more.
    assert cards[brand_only.pk] == {"brand": "visa", "funding": None, "country": None}
    assert cards[legacy.pk] == {"brand": "visa", "funding": None, "country": None}


def test_the_fee_quote_is_the_fee_settle_posts_even_if_the_merchant_changes(
    merchant,
):
    payment = pay(merchant, card_token(merchant, VISA_US), amount=10_000)
    ids = validated(payment)
    enrich_batch(ids)
    quote = Payment.objects.get(pk=payment.pk).fee
    assert quote == 320
    merchant.fee_bps, merchant.fee_fixed = 500, 0  # after the quote
    merchant.save()
    pipeline.execute_batch(ids)
    assert pipeline.settle_batch(ids) == 1
    payment.refresh_from_db()
    assert payment.fee == quote
    fees = Posting.objects.filter(
        entry__payment_id=payment.pk, account__code=FEES
    ).values_list("amount", flat=True)
    assert list(fees) == [quote]


def test_enrich_twice_changes_nothing_the_second_time(merchant):
    rules(merchant, card_velocity_count=1)
    payments = pay(merchant, card_token(merchant, VISA_US), n=2)
    ids = validated(*payments)
    assert enrich_batch(ids) == {"enriched": 1, "review": 1, "blocked": 0}
    assert enrich_batch(ids) == {}
    assert VelocityEntry.objects.count() == 2
    assert DeadLetter.objects.filter(stage="review").count() == 1


def test_a_rerun_after_a_crash_counts_the_same(merchant):
    """A run whose velocity entries committed but whose moves did not (here:
    put back to validated) gets the same verdicts again, not a double count."""
    rules(merchant, card_velocity_count=2)
    payments = pay(merchant, card_token(merchant, VISA_US), n=3)
    ids = validated(*payments)
    enrich_batch(ids)
    first = [Payment.objects.get(pk=i).enrichment["risk"] for i in ids]
    Payment.objects.filter(pk__in=ids).update(status="validated")
    DeadLetter.objects.all().delete()
    enrich_batch(ids)
    assert [Payment.objects.get(pk=i).enrichment["risk"] for i in ids] == first
    assert [r["outcome"] for r in first] == ["allow", "allow", "review"]


# --- the rules and their outcomes ---------------------------------------------


def test_rules_are_off_by_default_and_cost_no_velocity_rows(merchant):
    payments = pay(merchant, card_token(merchant, VISA_US), n=30, customer="cus_1")
    assert enrich_batch(validated(*payments))["enriched"] == 30
    assert not VelocityEntry.objects.exists()


def test_a_blocked_bin_declines_with_risk_blocked_and_the_rule(
    merchant,
    broker,  # noqa: F811
):
    rules(merchant, blocked_bins=["424242"])
    blocked = pay(merchant, card_token(merchant, VISA_US))
    other = pay(merchant, card_token(merchant, VISA_DEBIT))
    assert enrich_batch(validated(blocked, other)) == {
        "enriched": 1,
        "review": 0,
        "blocked": 1,
    }
    blocked.refresh_from_db()
    assert (blocked.status, blocked.failure_code) == ("declined", "risk_blocked")
    assert "blocked_bin" in blocked.failure_message
    assert blocked.enrichment["risk"] == {"outcome": "block", "rule": "blocked_bin"}
    assert blocked.fee is None
    assert not DeadLetter.objects.exists()  # a decline is an outcome, not an error
    assert published_ids(broker, "execute") == [other.pk]


def test_a_blocked_country_blocks_and_an_unknown_country_never_matches(merchant):
    rules(merchant, blocked_countries=["GB"])
    gb = pay(merchant, card_token(merchant, VISA_GB))
    us = pay(merchant, card_token(merchant, VISA_US))
    unknown = pay(merchant, card_token(merchant, "4012888888881881"))
    enrich_batch(validated(gb, us, unknown))
    assert verdict(gb) == {"outcome": "block", "rule": "blocked_country"}
    assert verdict(us)["outcome"] == verdict(unknown)["outcome"] == "allow"


def test_the_amount_ceiling_holds_for_review_by_default(merchant):
    rules(merchant, amount_ceiling=5000)
    token = card_token(merchant, VISA_US)
    at, over = pay(merchant, token, amount=5000), pay(merchant, token, amount=5001)
    assert enrich_batch(validated(at, over)) == {
        "enriched": 1,
        "review": 1,
        "blocked": 0,
    }
    over.refresh_from_db()
    assert over.status == S.REVIEW and over.failure_code == ""
    assert over.enrichment["risk"] == {"outcome": "review", "rule": "amount_ceiling"}
    letter = DeadLetter.objects.get(payment=over)
    assert (letter.stage, letter.status) == ("review", "open")
    assert "amount_ceiling" in letter.message


def test_a_merchant_may_make_a_rule_block_instead_of_review(merchant):
    rules(merchant, amount_ceiling=5000, outcomes={"amount_ceiling": "block"})
    over = pay(merchant, card_token(merchant, VISA_US), amount=9000)
    enrich_batch(validated(over))
    over.refresh_from_db()
    assert (over.status, over.failure_code) == ("declined", "risk_blocked")


def test_block_wins_over_review_and_names_its_rule(merchant):
    rules(merchant, amount_ceiling=10, blocked_countries=["US"])
    both = pay(merchant, card_token(merchant, VISA_US), amount=11)
    enrich_batch(validated(both))
    assert verdict(both) == {"outcome": "block", "rule": "blocked_country"}


def test_card_velocity_counts_the_batch_and_earlier_batches(merchant):
    rules(merchant, card_velocity_count=3)
    card = card_token(merchant, VISA_US)
    same_card_other_token = card_token(merchant, VISA_US)  # same fingerprint
    first = [*pay(merchant, card, n=2), pay(merchant, same_card_other_token)]
    first.append(pay(merchant, card))
    other = pay(merchant, card_token(merchant, VISA_DEBIT))
    ids = validated(*first, other)
    assert enrich_batch(ids) == {"enriched": 4, "review": 1, "blocked": 0}
    assert statuses(ids) == ["enriched"] * 3 + ["review", "enriched"]
    later = pay(merchant, card)
    enrich_batch(validated(later))
    assert verdict(later) == {"outcome": "review", "rule": "card_velocity"}


def test_card_velocity_forgets_payments_outside_the_window(merchant):
    rules(merchant, card_velocity_count=1, card_velocity_window=600)
    card = card_token(merchant, VISA_US)
    old = pay(merchant, card)
    Payment.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(seconds=601)
    )
    enrich_batch(validated(old))
    new = pay(merchant, card)
    enrich_batch(validated(new))
    assert verdict(old)["outcome"] == verdict(new)["outcome"] == "allow"
    again = pay(merchant, card)
    enrich_batch(validated(again))
    assert verdict(again)["rule"] == "card_velocity"


def test_card_velocity_by_amount(merchant):
    rules(merchant, card_velocity_amount=2500)
    card = card_token(merchant, VISA_US)
    payments = [pay(merchant, card, amount=1000) for _ in range(3)]
    enrich_batch(validated(*payments))
    assert [verdict(p)["outcome"] for p in payments] == ["allow", "allow", "review"]


def test_customer_velocity_follows_the_customer_across_cards(merchant):
    rules(merchant, customer_velocity_count=2)
    cus = [
        pay(merchant, card_token(merchant, number), customer="cus_9")
        for number in (VISA_US, VISA_DEBIT, VISA_GB)
    ]
    anonymous = pay(merchant, card_token(merchant, VISA_US), n=3)
    other = pay(merchant, card_token(merchant, VISA_US), customer="cus_10")
    enrich_batch(validated(*cus, *anonymous, other))
    assert [verdict(p)["outcome"] for p in cus] == ["allow", "allow", "review"]
    assert verdict(cus[2])["rule"] == "customer_velocity"
    assert {verdict(p)["outcome"] for p in [*anonymous, other]} == {"allow"}


def test_velocity_is_per_merchant(merchant):
    from tests.factories import MerchantFactory

    rules(merchant, card_velocity_count=1)
    other = MerchantFactory(risk_card_velocity_count=1)
    mine = pay(merchant, card_token(merchant, VISA_US))
    theirs = pay(other, card_token(other, VISA_US))
    enrich_batch(validated(mine, theirs))
    assert verdict(mine)["outcome"] == verdict(theirs)["outcome"] == "allow"


# --- cost: set-based, whatever the batch size ---------------------------------


def _count_statements(merchant, n):
    """Statements one enrich batch sends to PostgreSQL, the ORM's and
    pg_cursor's alike (psycopg's cursor is hooked), savepoints aside (the
    test's own transaction makes the stage's atomic block one)."""
    import psycopg

    seen = []
    real = psycopg.Cursor.execute

    def execute(self, query, *args, **kwargs):
        text = query if isinstance(query, str) else repr(query)
        if not text.lstrip().upper().startswith(("SAVEPOINT", "RELEASE")):
            seen.append(text)
        return real(self, query, *args, **kwargs)

    token = card_token(merchant, VISA_US)
    ids = validated(*[pay(merchant, token) for _ in range(n)])
    psycopg.Cursor.execute = execute
    try:
        enrich_batch(ids)
    finally:
        psycopg.Cursor.execute = real
    return len(seen), statuses(ids)


def test_a_merchant_without_rules_costs_the_same_statements_for_5_or_100(merchant):
    small, states = _count_statements(merchant, 5)
    assert set(states) == {"enriched"}
    large, states = _count_statements(merchant, 100)
    assert set(states) == {"enriched"}
    assert small == large
    # Read payments, merchants, BIN data; the UPDATE and its events.
    assert large <= 5


def test_velocity_rules_cost_two_statements_whatever_the_batch_size(merchant):
    base, _ = _count_statements(merchant, 5)
    rules(merchant, card_velocity_count=10_000, customer_velocity_count=10_000)
    small, _ = _count_statements(merchant, 5)
    large, states = _count_statements(merchant, 150)
    assert set(states) == {"enriched"}
    assert small == large == base + 2


def test_held_and_blocked_batches_cost_the_same_for_5_or_60(merchant):
    rules(merchant, amount_ceiling=500)  # every payment of 1000 is held
    small, _ = _count_statements(merchant, 5)
    large, states = _count_statements(merchant, 60)
    assert set(states) == {"review"} and small == large
    rules(merchant, amount_ceiling=None, blocked_bins=["424242"])
    small, _ = _count_statements(merchant, 5)
    large, states = _count_statements(merchant, 60)
    assert set(states) == {"declined"} and small == large


# --- the sweeper -----------------------------------------------------------------


def _age(ids, seconds):
    from payments.models import OpenPayment

    then = timezone.now() - timedelta(seconds=seconds)
    Payment.objects.filter(pk__in=ids).update(updated_at=then)
    OpenPayment.objects.filter(payment_id__in=ids).update(opened_at=then)


def test_the_sweeper_re_drives_validated_to_enrich_and_enriched_to_execute(
    merchant,
    broker,  # noqa: F811
):
    rules(merchant, amount_ceiling=10)
    token = card_token(merchant, VISA_US)
    stuck_validated = pay(merchant, token, amount=5)
    stuck_enriched = pay(merchant, token, amount=5)
    held = pay(merchant, token, amount=50)
    validated(stuck_validated, stuck_enriched, held)
    enrich_batch([stuck_enriched.pk, held.pk])
    broker.flushdb()
    _age([stuck_validated.pk, stuck_enriched.pk, held.pk], 600)
    counts = sweeper.sweep(older_than=timedelta(seconds=60))
    assert counts == {"validated": 1, "enriched": 1}  # review waits for a person
    assert published_ids(broker, "validate") == [stuck_validated.pk]
    assert published_ids(broker, "execute") == [stuck_enriched.pk]
    assert PAYMENT_STEPS[S.VALIDATED].stage == "enrich"
    assert Payment.objects.get(pk=held.pk).status == S.REVIEW


def test_the_enrich_task_is_the_workflows_and_a_token_that_is_gone_is_no_crash(
    merchant,
):
    """A token row without BIN data (a factory token) is enriched with its
    brand only; nothing in enrich opens the card."""
    payment = pay(merchant, TokenFactory(merchant_id=merchant.id))
    enrich_batch(validated(payment))
    payment.refresh_from_db()
    assert payment.status == S.ENRICHED
    assert payment.enrichment["card"]["brand"] == "visa"
    assert enrich.REVIEW_STAGE == "review"
