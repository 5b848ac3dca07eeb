"""Drop the per-statement NOTIFY trigger: NOTIFY serializes committing
transactions, so one per intake transaction capped single-payment intake at a
few hundred per second. The application now wakes the relay itself, at most
every few milliseconds per process (payments.services.events.wake_relay)."""

from django.db import migrations

DROP = """
DROP TRIGGER IF EXISTS payments_event_notify ON payments_event;
DROP FUNCTION IF EXISTS surge_outbox_notify();
"""


class Migration(migrations.Migration):
    dependencies = [("payments", "0005_event_payment_unindexed")]
    operations = [migrations.RunSQL([DROP], migrations.RunSQL.noop)]
