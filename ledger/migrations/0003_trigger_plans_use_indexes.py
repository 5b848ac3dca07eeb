"""The deferred per-entry checks must use ``ledger_posting``'s entry index.

PL/pgSQL caches each query's plan for the life of the connection. A backend
that first ran ``ledger_entry_has_postings`` or ``ledger_entry_balanced`` while
the postings table was empty and never analyzed planned a sequential scan, and
kept it: every later entry scanned every posting, O(n) per entry and O(n^2) per
run. Seeing an equality on an indexed column, the planner now always takes
the index, whatever the statistics say. The SET applies only while the
function runs; the checks' own session marker is unaffected.
"""

from django.db import migrations

FUNCTIONS = ("ledger_entry_balanced()", "ledger_entry_has_postings()")


class Migration(migrations.Migration):
    dependencies = [("ledger", "0002_integrity_triggers")]

    operations = [
        migrations.RunSQL(
            [f"ALTER FUNCTION {function} SET enable_seqscan = off" for function in FUNCTIONS],
            [f"ALTER FUNCTION {function} RESET enable_seqscan" for function in FUNCTIONS],
        )
    ]
