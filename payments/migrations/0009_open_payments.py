"""Transitions become HOT updates: no index on payments holds a column they write.

The sweeper used to find stale payments through an index on (status,
updated_at). Every transition changes both, so every transition wrote a new
entry into every index of the table (five), 20 index writes per payment. Now:

- ``payments_openpayment`` lists the payments that are not final. Database
  triggers keep it, whatever writes a payment (intake's statement, the batch
  insert, the ORM, a shell): a payment inserted non-final gets a row, and the
  row goes when an UPDATE makes the payment final: statement-level, one
  INSERT/DELETE per statement, from its transition table.
- the (status, updated_at) index is dropped;
- ``fillfactor`` leaves room on each page for the new row versions, so an
  update can stay on its page (a HOT update needs both).

What it saved on the 100k burst is in docs/performance.md.
"""

import django.db.models.deletion
from django.db import migrations, models

FINAL = "('settled', 'declined', 'failed')"

INSTALL = f"""
CREATE FUNCTION payment_open_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO payments_openpayment (payment_id, opened_at)
    SELECT id, created_at FROM added WHERE status NOT IN {FINAL};
    RETURN NULL;
END $$;

CREATE TRIGGER payment_open_on_insert AFTER INSERT ON payments_payment
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION payment_open_on_insert();

CREATE FUNCTION payment_close_on_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM payments_openpayment WHERE payment_id = ANY(ARRAY(
        SELECT id FROM changed WHERE status IN {FINAL}));
    RETURN NULL;
END $$;
-- PL/pgSQL keeps a plan per connection, made the first time; made on an
-- empty table it would be a sequential scan for good (ledger 0003 found that
-- the hard way). The DELETE must always use the primary key.
ALTER FUNCTION payment_close_on_final() SET enable_seqscan = off;

CREATE TRIGGER payment_close_on_final AFTER UPDATE ON payments_payment
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION payment_close_on_final();

INSERT INTO payments_openpayment (payment_id, opened_at)
    SELECT id, created_at FROM payments_payment WHERE status NOT IN {FINAL};

-- A payment's row is rewritten four times on its way to settled.
ALTER TABLE payments_payment SET (fillfactor = 60);
"""

REMOVE = """
DROP TRIGGER IF EXISTS payment_open_on_insert ON payments_payment;
DROP TRIGGER IF EXISTS payment_close_on_final ON payments_payment;
DROP FUNCTION IF EXISTS payment_open_on_insert();
DROP FUNCTION IF EXISTS payment_close_on_final();
ALTER TABLE payments_payment RESET (fillfactor);
"""

class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0008_lean_intake_indexes"),
    ]

    operations = [
        migrations.CreateModel(
            name="OpenPayment",
            fields=[
                (
                    "payment",
                    models.OneToOneField(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to="payments.payment",
                    ),
                ),
                ("opened_at", models.DateTimeField()),
            ],
        ),
        migrations.RemoveIndex(
            model_name="payment",
            name="payment_open_by_age",
        ),
        migrations.RunSQL([INSTALL], [REMOVE]),
    ]
