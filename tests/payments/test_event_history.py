"""Events are append-only in the database: whatever writes (ORM, raw SQL), an
event's content never changes and no event is deleted; only the relay's
publication state moves."""

import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from payments.models import Event, Payment
from payments.services.relay import relay_once
from tests.factories import TokenFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def event(merchant):
    token = TokenFactory(merchant_id=merchant.id)
    payment = Payment.objects.create(
        merchant=merchant, amount=100, currency="usd", source=token
    )
    return Event.objects.create(
        type="payment.created",
        merchant_id=merchant.id,
        payment=payment,
        data={"amount": 100, "currency": "usd"},
    )


def _refused(sql, params):
    with pytest.raises(DatabaseError, match="append-only"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("type", "payment.settled"),
        ("data", '{"amount": 1, "currency": "usd"}'),
        ("payment_id", "pay_other"),
        ("merchant_id", "mer_other"),
        ("created_at", "2020-01-01T00:00:00Z"),
    ],
)
def test_raw_sql_cannot_change_an_events_content(event, column, value):
    sql = f"UPDATE payments_event SET {column} = %s WHERE id = %s"  # noqa: S608
    _refused(sql, [value, event.pk])
    event.refresh_from_db()
    assert event.type == "payment.created" and event.data["amount"] == 100


def test_the_orm_cannot_change_an_events_content_either(event):
    with pytest.raises(DatabaseError, match="append-only"):
        with transaction.atomic():
            Event.objects.filter(pk=event.pk).update(data={"amount": 5})


def test_raw_sql_cannot_delete_an_event(event):
    _refused("DELETE FROM payments_event WHERE id = %s", [event.pk])
    assert Event.objects.filter(pk=event.pk).exists()


def test_publication_state_alone_may_change(event):
    now = timezone.now()
    assert Event.objects.filter(pk=event.pk).update(published_at=now) == 1
    assert Event.objects.filter(pk=event.pk).update(published_at=None) == 1  # replay


def test_the_relay_still_claims_and_marks_events_published(event):
    assert relay_once(batch_size=10) == 1
    event.refresh_from_db()
    assert event.published_at is not None and event.type == "payment.created"


def test_the_trigger_guards_every_column_but_published_at():
    """A column added to Event is guarded too, or this fails: the trigger's
    WHEN lists the columns (it runs in C, cheaper than a function per row)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t "
            "WHERE t.tgrelid = 'payments_event'::regclass "
            "AND t.tgname = 'payments_event_content_frozen'"
        )
        (definition,) = cursor.fetchone()
    columns = {f.column for f in Event._meta.concrete_fields} - {"published_at"}
    for column in columns:
        assert f"old.{column}" in definition.lower(), column
        assert f"new.{column}" in definition.lower(), column
    assert "published_at" not in definition


def test_events_and_deliveries_are_partitioned_by_their_event_id():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, pg_get_partkeydef(c.oid) FROM pg_class c "
            "WHERE c.relname IN ('payments_event', 'payments_webhookdelivery')"
        )
        keys = dict(cursor.fetchall())
    assert keys == {
        "payments_event": "RANGE (id)",
        "payments_webhookdelivery": "RANGE (event_id)",
    }
