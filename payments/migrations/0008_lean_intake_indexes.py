"""Fewer index writes per single payment (each index is a write per insert and,
for payments, per state change):

- idempotency keys: drop the merchant FK index and the expires_at index (the
  unique (merchant, key) serves both the lookup and the FK; purging walks the
  primary key, keys expire in insertion order);
- payments: the batch index only for payments that have a batch;
- the ``varchar_pattern_ops`` twins Django adds to every indexed CharField on
  PostgreSQL (for LIKE 'prefix%'; nothing here queries ids that way) on the
  three tables intake writes.
"""

import django.db.models.deletion
from django.db import migrations, models

HOT_TABLES = ("payments_payment", "payments_event", "payments_idempotencykey")


def drop_pattern_ops_indexes(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
            "AND tablename = ANY(%s) AND indexdef LIKE '%%varchar_pattern_ops%%'",
            [list(HOT_TABLES)],
        )
        names = [name for (name,) in cursor.fetchall()]
    for name in names:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0007_webhooks"),
        ("vault", "0001_initial"),
    ]

    operations = [
        migrations.AlterField(
            model_name="idempotencykey",
            name="expires_at",
            field=models.DateTimeField(),
        ),
        migrations.AlterField(
            model_name="idempotencykey",
            name="merchant",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                to="payments.merchant",
            ),
        ),
        migrations.AlterField(
            model_name="payment",
            name="batch",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="payments",
                to="payments.paymentbatch",
            ),
        ),
        migrations.AddIndex(
            model_name="payment",
            index=models.Index(
                condition=models.Q(("batch__isnull", False)),
                fields=["batch"],
                name="payment_batch",
            ),
        ),
        # Not recreated on the way back: they only ever served LIKE queries.
        migrations.RunPython(drop_pattern_ops_indexes, migrations.RunPython.noop),
    ]
