"""Joins two migrations written side by side: the enrich stage's and the
events' partitions. Neither touches the other's tables."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0016_enrich_and_risk"),
        ("payments", "0016_event_history_partitions"),
    ]

    operations = []
