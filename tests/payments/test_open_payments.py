"""The open-payments list (kept by triggers), HOT transitions, and the sweeper
that reads the list instead of an index on status."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from gateways.testcards import CARD_DECLINED
from payments.models import OpenPayment, Payment
from payments.services import pipeline, sweeper
from payments.services.enrich import enrich_batch
from payments.services.transitions import transition
from tests.factories import card_token

pytestmark = pytest.mark.django_db


def pay(merchant, token, **fields):
    return Payment.objects.create(
        merchant=merchant, amount=1000, currency="usd", source=token, **fields
    )


def open_ids() -> set[str]:
    return set(OpenPayment.objects.values_list("payment_id", flat=True))


def test_a_payment_is_open_from_insert_until_its_status_is_final(merchant):
    token = card_token(merchant)
    settles, declines, fails = (pay(merchant, token) for _ in range(3))
    declined_card = pay(merchant, card_token(merchant, CARD_DECLINED))
    already_final = pay(merchant, token, status="failed")
    ids = [settles.pk, declines.pk, fails.pk, declined_card.pk]
    assert open_ids() == set(ids)  # inserted final: never opened
    opened = OpenPayment.objects.get(payment_id=settles.pk).opened_at
    assert opened == Payment.objects.get(pk=settles.pk).created_at

    transition(payment_ids=[fails.pk], expected="pending", new="failed")
    assert fails.pk not in open_ids()
    pipeline.validate_batch([settles.pk, declined_card.pk])
    enrich_batch([settles.pk, declined_card.pk])
    pipeline.execute_batch([settles.pk, declined_card.pk])
    assert Payment.objects.get(pk=declined_card.pk).status == "declined"
    assert open_ids() == {settles.pk, declines.pk}  # succeeded is not final yet
    pipeline.settle_batch([settles.pk])
    assert open_ids() == {declines.pk}
    assert already_final.pk not in open_ids()


def test_intake_and_batch_intake_open_their_payments(api, token):
    single = api.post(
        "/v1/payments",
        data={"amount": 500, "currency": "usd", "source": token.id},
        format="json",
        HTTP_IDEMPOTENCY_KEY="open-1",
    )
    assert single.status_code == 202, single.content
    batch = api.post(
        "/v1/payment_batches",
        data={
            "payments": [
                {"amount": 100 + i, "currency": "usd", "source": token.id,
                 "reference": f"open-{i}"}
                for i in range(5)
            ]
        },
        format="json",
        HTTP_IDEMPOTENCY_KEY="open-b",
    )  # fmt: skip
    assert batch.status_code == 202, batch.content
    expected = {single.json()["id"]} | {p["id"] for p in batch.json()["payments"]}
    assert open_ids() == expected


def _xact_updates() -> tuple[int, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_stat_get_xact_tuples_updated(%s::regclass), "
            "pg_stat_get_xact_tuples_hot_updated(%s::regclass)",
            ["payments_payment", "payments_payment"],
        )
        return cursor.fetchone()


def test_transitions_write_no_index_entries(merchant):
    """HOT: no indexed column changes and the new version fits on its page (the
    fillfactor leaves room). With status in any index this count would be 0."""
    token = card_token(merchant)
    ids = [pay(merchant, token).pk for _ in range(10)]
    before = _xact_updates()
    assert pipeline.validate_batch(ids)["validated"] == 10
    updated, hot = (a - b for a, b in zip(_xact_updates(), before, strict=True))
    assert updated == 10
    assert hot == 10


def test_the_payments_table_leaves_room_for_updates():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reloptions FROM pg_class WHERE relname = 'payments_payment'"
        )
        assert "fillfactor=60" in cursor.fetchone()[0]


def _age(payment_ids, seconds):
    then = timezone.now() - timedelta(seconds=seconds)
    Payment.objects.filter(pk__in=payment_ids).update(updated_at=then)
    OpenPayment.objects.filter(payment_id__in=payment_ids).update(opened_at=then)


def test_the_sweeper_leases_stale_open_payments_once_oldest_first(
    merchant, monkeypatch
):
    published: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(
        sweeper, "send", lambda step, ids: published.append((step.stage, list(ids)))
    )
    token = card_token(merchant)
    pending_old, pending_new, validated_old, settled_old = (
        pay(merchant, token) for _ in range(4)
    )
    transition(payment_ids=[validated_old.pk], expected="pending", new="validated")
    pipeline.validate_batch([settled_old.pk])
    enrich_batch([settled_old.pk])
    pipeline.execute_batch([settled_old.pk])
    pipeline.settle_batch([settled_old.pk])
    _age([pending_old.pk, validated_old.pk, settled_old.pk], 120)

    counts = sweeper.sweep(older_than=timedelta(seconds=60))

    assert counts == {"pending": 1, "validated": 1}
    assert sorted(published) == [
        ("enrich", [validated_old.pk]),
        ("validate", [pending_old.pk]),
    ]
    leased = Payment.objects.get(pk=pending_old.pk).updated_at
    assert timezone.now() - leased < timedelta(seconds=5)  # the lease
    assert sweeper.sweep(older_than=timedelta(seconds=60)) == {}  # leased: not again
    assert pending_new.pk not in {pid for _, ids in published for pid in ids}


def test_the_sweeper_limit_takes_the_stalest_first(merchant, monkeypatch):
    published: list[str] = []
    monkeypatch.setattr(sweeper, "send", lambda step, ids: published.extend(ids))
    token = card_token(merchant)
    payments = [pay(merchant, token) for _ in range(5)]
    for age, payment in enumerate(payments):
        _age([payment.pk], 100 + age * 10)
    assert sweeper.sweep(older_than=timedelta(seconds=60), limit=2) == {"pending": 2}
    assert set(published) == {payments[4].pk, payments[3].pk}
