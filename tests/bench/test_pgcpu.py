"""PostgreSQL CPU by application: backends that end during a run still count."""

import psycopg
import pytest
from django.db import connection

from bench.pgcpu import BackendCPU, proc_cpu

pytestmark = pytest.mark.django_db


def _dsn() -> str:
    s = connection.settings_dict
    return (
        f"host={s['HOST'] or '127.0.0.1'} port={s['PORT'] or 5432} "
        f"user={s['USER']} dbname={s['NAME']}"
    )


def _burn(app: str, rows: int) -> float:
    """Make a backend for ``app`` spend CPU, then end it; its CPU seconds."""
    with psycopg.connect(_dsn(), autocommit=True, application_name=app) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        conn.execute(
            "SELECT count(*) FROM generate_series(1, %s) g WHERE g %% 7 = 3", [rows]
        )
        spent = proc_cpu(pid)
    return spent


def test_a_backend_that_ended_between_readings_is_counted():
    meter = BackendCPU(_dsn(), interval=0.02)
    meter.start()
    try:
        before = meter.totals().get("burner", 0.0)
        spent = _burn("burner", 4_000_000)
        # The backend is gone now; the reading after it still holds its time.
        after = meter.totals().get("burner", 0.0)
    finally:
        meter.stop()
    assert spent > 0.1
    assert after - before >= spent * 0.5  # at most one interval of it is missed
    assert after - before <= spent + 0.05


def test_backends_alive_at_the_first_reading_count_from_then():
    with psycopg.connect(_dsn(), autocommit=True, application_name="early") as conn:
        conn.execute("SELECT count(*) FROM generate_series(1, 2000000)")
        meter = BackendCPU(_dsn(), interval=0.02)
        meter.start()
        try:
            first = meter.totals().get("early", 0.0)
        finally:
            meter.stop()
    assert first < 0.05  # its earlier work is not this window's
