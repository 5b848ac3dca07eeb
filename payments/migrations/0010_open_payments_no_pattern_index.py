"""The open-payments list without the ``varchar_pattern_ops`` twin of its key.

Django adds one to every indexed CharField on PostgreSQL (for LIKE 'prefix%'
queries, which nothing here makes); 0008 dropped them from the tables intake
writes, and 0009's new table got one again: an extra index entry for every
payment accepted and a dead one for every payment that becomes final.
"""

from django.db import migrations


def drop_pattern_ops_index(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
            "AND tablename = 'payments_openpayment' "
            "AND indexdef LIKE '%%varchar_pattern_ops%%'"
        )
        names = [name for (name,) in cursor.fetchall()]
    for name in names:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')


class Migration(migrations.Migration):
    dependencies = [("payments", "0009_open_payments")]

    operations = [
        migrations.RunPython(drop_pattern_ops_index, migrations.RunPython.noop),
    ]
