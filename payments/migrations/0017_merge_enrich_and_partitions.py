"""Joins three migrations written side by side: the enrich stage's, the
events' partitions and the API keys' unique digest. None touches another's
tables."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0016_enrich_and_risk"),
        ("payments", "0016_event_history_partitions"),
        ("payments", "0016_apikey_digest_unique"),
    ]

    operations = []
