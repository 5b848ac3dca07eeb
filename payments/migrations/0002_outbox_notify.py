"""Wake relays with NOTIFY once per INSERT statement on the outbox."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION surge_outbox_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('surge_outbox', '');
    RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER payments_event_notify AFTER INSERT ON payments_event
    FOR EACH STATEMENT EXECUTE FUNCTION surge_outbox_notify();
"""
DROP = """
DROP TRIGGER IF EXISTS payments_event_notify ON payments_event;
DROP FUNCTION IF EXISTS surge_outbox_notify();
"""


class Migration(migrations.Migration):
    dependencies = [("payments", "0001_initial")]
    operations = [migrations.RunSQL([CREATE], [DROP])]
