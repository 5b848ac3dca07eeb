"""Migration 0016 converts populated events and deliveries tables into
monthly partitions, keeping every row (and it can be undone)."""

from datetime import UTC, datetime

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from core.ids import id_at
from payments.models import WebhookEndpoint
from payments.services.partitions import (
    Month,
    current_month,
    partition_name,
    partitions_list,
)
from tests.factories import MerchantFactory

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("payments", "0015_refund_retries")
AFTER = ("payments", "0016_event_history_partitions")
OLD = Month(2025, 3)


def migrate(target):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])


def migrate_latest():
    """Every app to its newest migration: going back to 0015 also undid the
    migrations written beside 0016, which the next tests need."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


def rows(table: str) -> list:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {table} ORDER BY id")  # noqa: S608
        return [r[0] for r in cursor.fetchall()]


@pytest.fixture
def only_current_months():
    """Leave the partitions as a fresh database has them (the migration here
    makes months back to 2025-03 for the rows it finds)."""
    yield
    with connection.cursor() as cursor:
        for table in ("payments_event", "payments_webhookdelivery"):
            for month, name in partitions_list(table).items():
                if month < current_month():
                    cursor.execute(f"DROP TABLE {name}")


def test_populated_tables_become_partitions_with_every_row(only_current_months):
    merchant = MerchantFactory()
    endpoint = WebhookEndpoint.objects.create(
        merchant=merchant, url="https://example.com/h", secret="whsec_test"
    )
    migrate(BEFORE)
    try:
        old = id_at("evt", int(OLD.start().timestamp() * 1000) + 7)
        now = id_at("evt", int(datetime.now(UTC).timestamp() * 1000))
        legacy = "evt_legacy"  # no time in it: the default partition
        with connection.cursor() as cursor:
            for event_id in (old, now, legacy):
                cursor.execute(
                    "INSERT INTO payments_event (id, type, merchant_id, data, "
                    "created_at) VALUES (%s, 'payment.created', %s, '{}', now())",
                    [event_id, merchant.pk],
                )
                cursor.execute(
                    "INSERT INTO payments_webhookdelivery (id, event_id, event_type, "
                    "payment_id, payload, status, attempts, last_error, created_at, "
                    "endpoint_id, last_response_body) VALUES (%s, %s, 'payment.created', "
                    "'', '{}', 'succeeded', 1, '', now(), %s, '')",
                    ["whd_" + event_id[4:], event_id, endpoint.pk],
                )
    finally:
        migrate_latest()
    this = current_month()
    for table in ("payments_event", "payments_webhookdelivery"):
        column = "id" if table == "payments_event" else "event_id"
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {column} FROM {table} ORDER BY 1")  # noqa: S608
            assert [r[0] for r in cursor.fetchall()] == sorted([old, now, legacy])
        assert len(rows(partition_name(table, OLD))) == 1
        assert len(rows(partition_name(table, this))) == 1
        assert len(rows(f"{table}_default")) == 1
        ahead = this.next().next().next()
        assert rows(partition_name(table, ahead)) == []  # made ahead, empty
    with pytest.raises(DatabaseError, match="append-only"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("DELETE FROM payments_event WHERE id = %s", [old])


def test_the_migration_can_be_undone_keeping_every_row():
    merchant = MerchantFactory()
    event_id = id_at("evt", int(datetime.now(UTC).timestamp() * 1000))
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO payments_event (id, type, merchant_id, data, created_at) "
            "VALUES (%s, 'payment.created', %s, '{}', now())",
            [event_id, merchant.pk],
        )
    migrate(BEFORE)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT relkind FROM pg_class WHERE relname = 'payments_event'"
            )
            assert cursor.fetchone()[0] == "r"  # a plain table again
        assert rows("payments_event") == [event_id]
    finally:
        migrate_latest()
    assert rows("payments_event") == [event_id]
