"""payments/sql.py builds the hot path's statements from the models: what it
writes is what the ORM writes, and a new Payment field needs no edit there."""

import hashlib
import hmac

import pytest
from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from payments import sql
from payments.models import IdempotencyKey, Payment
from payments.services.idempotency import key_digest
from tests.factories import MerchantFactory

# Differ between two payments by design.
PER_PAYMENT = {"id", "created_at", "updated_at"}
FIELDS = [f.attname for f in Payment._meta.concrete_fields]


def test_the_spec_covers_every_payment_column():
    assert list(sql.PAYMENT.columns) == FIELDS
    assert [c.column for c in sql.PAYMENT.columns.values()] == [
        f.column for f in Payment._meta.concrete_fields
    ]


def test_a_payment_row_has_every_field_with_the_models_defaults():
    row = sql.PaymentRow(
        id="pay_x", merchant_id="mer_x", amount=1, currency="usd",
        source_id="tok_x", created_at=None, updated_at=None,
    )  # fmt: skip
    model = Payment()
    for name in FIELDS:
        if name not in PER_PAYMENT | {"merchant_id", "amount", "currency", "source_id"}:
            assert getattr(row, name) == getattr(model, name), name
    assert sql.PaymentRow(**{n: None for n in FIELDS}).metadata is None
    assert row.metadata == {} and row.metadata is not sql.PaymentRow(
        id="a", merchant_id="m", amount=1, currency="usd", source_id="t",
        created_at=None, updated_at=None,
    ).metadata  # fmt: skip


@pytest.mark.django_db
def test_intake_writes_the_row_the_orm_would(api, token, merchant):
    body = {"amount": 1234, "currency": "eur", "source": token.id,
            "description": "it's \"quoted\" \\ é", "metadata": {"k": "v"}}  # fmt: skip
    resp = api.post("/v1/payments", data=body, format="json", HTTP_IDEMPOTENCY_KEY="o")
    assert resp.status_code == 202, resp.content
    written = Payment.objects.get(pk=resp.json()["id"])
    reference = Payment.objects.create(
        merchant=merchant, amount=1234, currency="eur", source=token,
        description=body["description"], metadata={"k": "v"},
    )  # fmt: skip
    reference.refresh_from_db()
    for name in set(FIELDS) - PER_PAYMENT:
        assert getattr(written, name) == getattr(reference, name), name
    assert written.created_at == written.updated_at


def test_a_new_column_with_a_default_is_written_without_naming_it():
    spec = sql.TableSpec(
        sql.PAYMENT.table,
        {
            **sql.PAYMENT.columns,
            "risk_outcome": sql.Column("risk_outcome", "risk_outcome", "text", "allow"),
        },
    )
    given = {name: "x" for name, c in spec.columns.items() if c.default is sql.REQUIRED}
    columns, values = spec.insert_values(given, what="test")
    assert columns.endswith('"risk_outcome"')
    assert values.endswith("'allow'::text")


def test_a_new_column_without_a_default_fails_at_build_naming_it():
    spec = sql.TableSpec(
        sql.PAYMENT.table,
        {
            **sql.PAYMENT.columns,
            "needed": sql.Column("needed", "needed", "text", sql.REQUIRED),
        },
    )
    given = {
        name: "x"
        for name, c in sql.PAYMENT.columns.items()
        if c.default is sql.REQUIRED
    }
    with pytest.raises(TypeError, match=r"payments_payment\.needed"):
        spec.insert_values(given, what="accept")


@pytest.mark.django_db(transaction=True)
def test_the_upgrade_turns_stored_keys_into_their_digests():
    """A retry that arrives after the upgrade still finds its key."""
    executor = MigrationExecutor(connection)
    before = [("payments", "0010_open_payments_no_pattern_index")]
    after = [("payments", "0011_idempotency_key_digests")]
    executor.migrate(before)
    merchant = MerchantFactory()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO payments_idempotencykey (merchant_id, key, method, path, "
            "request_hash, response_status, response_body, created_at, expires_at) "
            "VALUES (%s, %s, 'POST', '/v1/payments', 'h', 202, '{}', now(), "
            "now() + interval '1 day')",
            [merchant.pk, "order-77"],
        )
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(after)
    (stored,) = IdempotencyKey.objects.values_list("key", flat=True)
    # Back to the latest schema: the tests after this one in the process
    # need the migrations after 0011 too.
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    expected = hmac.new(
        settings.IDEMPOTENCY_KEY_SECRET.encode(), b"order-77", hashlib.sha256
    ).hexdigest()
    assert stored == expected == key_digest("order-77")
