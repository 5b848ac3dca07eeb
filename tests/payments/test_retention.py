"""Retention on real PostgreSQL: monthly partitions made ahead of need, and
old months archived to verified files, then dropped, never while a payment,
a refund, a webhook or a dead letter still needs them."""

import csv
import gzip
from datetime import UTC, datetime
from io import StringIO

import pytest
from celery import current_app
from django.core.management import CommandError, call_command
from django.db import connection

import payments.tasks  # noqa: F401 (registers the beat's task)
from core.ids import id_at
from payments.models import DeadLetter, Event, Payment, WebhookDelivery, WebhookEndpoint
from payments.services.archive import ArchiveError, archive_months
from payments.services.audit import audit_events
from payments.services.partitions import (
    Month,
    current_month,
    partition_name,
    partitions_create,
    partitions_ensure,
    partitions_list,
)
from tests.factories import TokenFactory

pytestmark = pytest.mark.django_db

OLD = Month(2025, 3)  # a month long ended
EVENTS, DELIVERIES = "payments_event", "payments_webhookdelivery"


def exists(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [name])
        return cursor.fetchone()[0] is not None


def month_ms(month: Month, offset: int = 0) -> int:
    return int(month.start().timestamp() * 1000) + offset


def old_payment(merchant, status="settled"):
    """A payment of OLD with its created event (ids and time in that month)."""
    at = datetime.fromtimestamp(month_ms(OLD, 5000) / 1000, tz=UTC)
    payment = Payment.objects.create(
        id=id_at("pay", month_ms(OLD, 5000)),
        merchant=merchant, amount=900, currency="usd", status=status,
        source=TokenFactory(merchant_id=merchant.id),
    )  # fmt: skip
    event_id = id_at("evt", month_ms(OLD, 6000))
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO payments_event (id, type, merchant_id, payment_id, data, "
            "created_at) VALUES (%s, 'payment.created', %s, %s, %s, %s)",
            [event_id, merchant.pk, payment.pk, '{"amount": 900}', at],
        )
    return payment, event_id


def delivery(merchant, event_id, status, payment_id=""):
    endpoint = WebhookEndpoint.objects.create(
        merchant=merchant, url="https://example.com/hook", secret="whsec_test"
    )
    made = WebhookDelivery.objects.create(
        endpoint=endpoint, event_id=event_id, event_type="payment.created",
        payment_id=payment_id, payload={"id": event_id, "note": "two\nlines"},
        status=status, next_attempt_at=datetime.now(UTC),
    )  # fmt: skip
    with connection.cursor() as cursor:
        # Check the endpoint FK now, as a commit would have long before an
        # archive (a table with pending trigger events cannot be dropped).
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    return made


@pytest.fixture
def old_month():
    partitions_create([OLD])
    return OLD


def test_partitions_are_made_ahead_of_need_and_making_them_again_is_a_no_op():
    first = partitions_ensure(ahead=5)
    months = [current_month()]
    for _ in range(5):
        months.append(months[-1].next())
    for table in (EVENTS, DELIVERIES):
        assert set(months) <= set(partitions_list(table))
        assert exists(f"{table}_default")
    # The migration made this month and 3 ahead: 4 and 5 are new.
    assert partition_name(EVENTS, months[-1]) in first.created
    again = partitions_ensure(ahead=5)
    assert again.created == [] and again.moved_from_default == 0
    out = StringIO()
    call_command("partitions", ahead=5, stdout=out)
    assert "nothing to create" in out.getvalue()


def test_a_row_beyond_every_partition_waits_in_default_and_moves_to_its_month(
    merchant,
):
    far = current_month()
    for _ in range(8):
        far = far.next()
    event_id = id_at("evt", month_ms(far, 1))
    Event.objects.create(id=event_id, type="note", merchant_id=merchant.pk)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM payments_event_default")
        assert cursor.fetchone()[0] == 1
    result = partitions_ensure(ahead=8)
    assert result.moved_from_default == 1 and result.left_in_default == {}
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {partition_name(EVENTS, far)}"  # noqa: S608
        )
        assert cursor.fetchall() == [(event_id,)]
    assert Event.objects.get(pk=event_id).type == "note"


def test_archive_writes_a_verified_file_then_drops_the_month(
    merchant, old_month, tmp_path
):
    payment, event_id = old_payment(merchant)
    delivery(merchant, event_id, "succeeded", payment.pk)
    done = archive_months(before=OLD.next(), directory=tmp_path)
    assert [o.month for o in done] == [OLD] and done[0].archived
    for table, rows in ((EVENTS, 1), (DELIVERIES, 1)):
        name = partition_name(table, OLD)
        assert not exists(name)
        path = tmp_path / f"{name}.csv.gz"
        with gzip.open(path, "rt", newline="") as handle:
            records = list(csv.reader(handle))
        assert len(records) - 1 == rows == done[0].rows[name]
        assert records[0][0] == "id"
        assert (records[1][0] if table == EVENTS else records[1][1]) == event_id
    assert not Event.objects.filter(pk=event_id).exists()
    assert not list(tmp_path.glob(".*partial"))
    assert audit_events().ok  # the audit starts where the kept history does


def test_a_dry_run_counts_and_changes_nothing(merchant, old_month, tmp_path):
    old_payment(merchant)
    out = StringIO()
    call_command(
        "archive", before=str(OLD.next()), dry_run=True, dir=str(tmp_path), stdout=out
    )
    assert (
        f"{OLD}: would archive {partition_name(EVENTS, OLD)} 1 rows" in out.getvalue()
    )
    assert exists(partition_name(EVENTS, OLD)) and not list(tmp_path.iterdir())


def refused(before, tmp_path) -> str:
    out = StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("archive", before=str(before), dir=str(tmp_path), stdout=out)
    assert caught.value.returncode == 1
    assert exists(partition_name(EVENTS, OLD)) and exists(
        partition_name(DELIVERIES, OLD)
    )
    assert not list(tmp_path.iterdir())  # nothing written
    return out.getvalue()


def test_archive_refuses_a_month_with_an_event_of_a_payment_not_final(
    merchant, old_month, tmp_path
):
    payment, _ = old_payment(merchant, status="processing")
    out = refused(OLD.next(), tmp_path)
    assert f"{OLD}: stays: 1 events of payments that are not final" in out
    assert payment.pk in out


def test_archive_refuses_a_month_with_an_undelivered_webhook(
    merchant, old_month, tmp_path
):
    payment, event_id = old_payment(merchant)
    pending = delivery(merchant, event_id, "pending", payment.pk)
    out = refused(OLD.next(), tmp_path)
    assert "1 undelivered webhook deliveries" in out and pending.pk in out


def test_archive_refuses_a_month_with_an_open_dead_letter(
    merchant, old_month, tmp_path
):
    payment, _ = old_payment(merchant)
    DeadLetter.objects.create(
        payment=payment, stage="settle", error_class="X", message="needs a human"
    )
    out = refused(OLD.next(), tmp_path)
    assert "events of payments with an open dead letter" in out


def test_archive_stops_at_the_first_month_that_must_stay(merchant, tmp_path):
    partitions_create([OLD, OLD.next()])
    old_payment(merchant, status="pending")  # holds OLD
    done = archive_months(before=OLD.next().next(), directory=tmp_path)
    assert [o.month for o in done] == [OLD] and done[0].refused
    assert exists(partition_name(EVENTS, OLD.next()))  # not skipped past


@pytest.mark.parametrize("before", ["2025-13", "2025-1", "march", ""])
def test_a_bad_before_is_refused_with_a_clear_error(before):
    with pytest.raises(CommandError, match="not a month as YYYY-MM") as caught:
        call_command("archive", before=before)
    assert caught.value.returncode == 2


def test_a_month_that_has_not_ended_cannot_be_archived():
    with pytest.raises(ArchiveError, match="only months that have ended"):
        archive_months(before=current_month().next())


def test_beat_makes_partitions_daily_through_the_task(settings):
    (entry,) = [
        e for e in settings.CELERY_BEAT_SCHEDULE.values()
        if e["task"] == "payments.ensure_partitions"
    ]  # fmt: skip
    assert entry["schedule"] == 24 * 3600
    settings.SURGE_PARTITION_MONTHS_AHEAD = 4
    month = current_month()
    for _ in range(4):
        month = month.next()
    created = current_app.tasks["payments.ensure_partitions"]()
    assert sorted(created) == sorted(
        [partition_name(EVENTS, month), partition_name(DELIVERIES, month)]
    )
