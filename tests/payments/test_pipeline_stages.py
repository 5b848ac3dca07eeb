"""The stages in-process (sandbox gateway): the logic, without the queue."""

import pytest

from payments.models import DeadLetter, Payment
from payments.services import pipeline
from payments.services.enrich import enrich_batch
from tests.factories import TokenFactory, card_token
from vault.models import Token

pytestmark = pytest.mark.django_db


def pay(merchant, token, amount=1000):
    return Payment.objects.create(
        merchant=merchant, amount=amount, currency="usd", source=token
    )


def test_a_token_that_will_not_open_fails_alone_with_a_dead_letter(merchant):
    good = pay(merchant, card_token(merchant))
    bad = pay(merchant, TokenFactory(merchant_id=merchant.id))  # not a real ciphertext
    ids = [good.pk, bad.pk]
    pipeline.validate_batch(ids)
    enrich_batch(ids)
    counts = pipeline.execute_batch(ids)
    assert counts["succeeded"] == 1 and counts["failed"] == 1
    bad.refresh_from_db()
    assert (bad.status, bad.failure_code) == ("failed", "card_unavailable")
    assert DeadLetter.objects.filter(payment=bad, stage="execute").count() == 1
    assert Payment.objects.get(pk=good.pk).status == "succeeded"


def test_validation_failures_are_failed_with_a_code_and_no_dead_letter(merchant):
    old_card = card_token(merchant)
    Token.objects.filter(pk=old_card.pk).update(exp_year=2025)  # time passed
    expired = pay(merchant, old_card)
    merchant.max_amount = 500
    merchant.save()
    too_big = pay(merchant, card_token(merchant), amount=501)
    pipeline.validate_batch([expired.pk, too_big.pk])
    expired.refresh_from_db()
    too_big.refresh_from_db()
    assert (expired.status, expired.failure_code) == ("failed", "expired_card")
    assert (too_big.status, too_big.failure_code) == ("failed", "amount_too_large")
    assert not DeadLetter.objects.exists()


def test_each_stage_run_twice_changes_nothing_the_second_time(merchant):
    payment = pay(merchant, card_token(merchant))
    ids = [payment.pk]
    assert pipeline.validate_batch(ids)["validated"] == 1
    assert pipeline.validate_batch(ids)["validated"] == 0
    enrich_batch(ids)
    assert pipeline.execute_batch(ids)["succeeded"] == 1
    assert pipeline.execute_batch(ids) == {}
    assert pipeline.settle_batch(ids) == 1
    assert pipeline.settle_batch(ids) == 0
    payment.refresh_from_db()
    assert payment.status == "settled" and payment.attempts == 1
