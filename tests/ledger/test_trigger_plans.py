"""The deferred per-entry checks look postings up by index, however the
statistics looked when the connection first ran them (ledger migration 0003)."""

import pytest
from django.db import connection

from ledger.services import post_settlements
from tests.ledger.helpers import assert_ledger_clean, settlement

pytestmark = pytest.mark.django_db(transaction=True)


def _posting_seq_scans() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'ledger_posting'"
        )
        return cursor.fetchone()[0]


def test_commit_checks_do_not_scan_all_postings_per_entry():
    # A new connection and a never-analyzed, empty table: the plan PL/pgSQL
    # caches now is the one it keeps for the connection's life.
    connection.close()
    before = _posting_seq_scans()
    for i in range(30):  # each call commits: both checks run per entry
        post_settlements([settlement(pid=f"pay_{i}", amount=1000 + i)])
    assert _posting_seq_scans() - before < 5
    assert_ledger_clean()


def test_the_checks_carry_their_planner_setting():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT proname, proconfig FROM pg_proc WHERE proname IN "
            "('ledger_entry_balanced', 'ledger_entry_has_postings')"
        )
        configs = dict(cursor.fetchall())
    assert configs == {
        "ledger_entry_balanced": ["enable_seqscan=off"],
        "ledger_entry_has_postings": ["enable_seqscan=off"],
    }
