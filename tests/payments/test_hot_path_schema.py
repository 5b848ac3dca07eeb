"""The single-payment hot path's database shape: which indexes each insert
writes, the prepared intake statement, and purging keys without an index on
their expiry."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from payments.models import IdempotencyKey
from payments.services.idempotency import purge_expired
from tests.factories import MerchantFactory

pytestmark = pytest.mark.django_db


def _indexes(table: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes "
            "WHERE schemaname = current_schema() AND tablename = %s",
            [table],
        )
        return {name for (name,) in cursor.fetchall()}


def test_every_index_on_the_intake_tables_is_one_we_chose():
    """Each index is a write per single payment (and, on payments, per state
    change). A new one must be added here on purpose."""
    assert _indexes("payments_idempotencykey") == {
        "payments_idempotencykey_pkey",
        "idempotency_key_per_merchant",
    }
    assert _indexes("payments_event") == {"payments_event_pkey", "event_unpublished"}
    assert _indexes("payments_payment") == {
        "payments_payment_pkey",
        "payment_merchant_id_desc",
        "payment_reference_per_merchant",
        "payment_batch",
    }
    # Written with every payment accepted, deleted when it becomes final.
    assert _indexes("payments_openpayment") == {"payments_openpayment_pkey"}


def test_the_intake_statement_is_prepared_once_per_connection(api, token):
    for i in range(3):
        resp = api.post(
            "/v1/payments",
            data={"amount": 100 + i, "currency": "usd", "source": token.id},
            format="json",
            HTTP_IDEMPOTENCY_KEY=f"prep-{i}",
        )
        assert resp.status_code == 202, resp.content
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            ["%INSERT INTO payments_idempotencykey%"],
        )
        assert cursor.fetchone()[0] == 1


def test_purge_removes_expired_keys_in_batches_and_keeps_live_ones():
    merchant = MerchantFactory()
    now = timezone.now()
    rows = [
        IdempotencyKey(
            merchant=merchant,
            key=f"k{i}",
            method="POST",
            path="/v1/payments",
            request_hash="h",
            response_status=202,
            response_body={},
            expires_at=now + timedelta(hours=-1 if i < 7 else 1),
        )
        for i in range(10)
    ]
    IdempotencyKey.objects.bulk_create(rows)
    assert purge_expired(batch_size=3) == 7
    assert set(IdempotencyKey.objects.values_list("key", flat=True)) == {
        "k7",
        "k8",
        "k9",
    }
    assert purge_expired(batch_size=3) == 0
