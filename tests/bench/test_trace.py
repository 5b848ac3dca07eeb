"""The tracer sees which process burnt the CPU and what PostgreSQL waited on,
and its per-second table lines that up with the requests of the same second."""

import csv
import subprocess
import sys
import threading
import time

import psycopg
import pytest
from django.db import connection

from bench.__main__ import Stack
from bench.pgcpu import proc_cpu
from bench.trace import Tracer, machine_cpu, per_second, postgres_kind

pytestmark = pytest.mark.django_db(transaction=True)


def _dsn() -> str:
    s = connection.settings_dict
    return (
        f"host={s['HOST'] or '127.0.0.1'} port={s['PORT'] or 5432} "
        f"user={s['USER']} dbname={s['NAME']}"
    )


class _Procs(Stack):
    """The bench's own process-tree reading, over processes this test starts."""

    def __init__(self, procs: dict):
        self.procs = procs


def test_the_spinning_process_and_a_lock_wait_show_up(tmp_path):
    spin = subprocess.Popen(
        [sys.executable, "-c", "import time\nend = time.time() + 30\n"
         "while time.time() < end: pass"],
    )  # fmt: skip
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    holder = psycopg.connect(_dsn())
    holder.execute("CREATE TABLE IF NOT EXISTS trace_lock (id int)")
    holder.commit()
    holder.execute("LOCK TABLE trace_lock IN ACCESS EXCLUSIVE MODE")
    blocked = threading.Thread(
        target=lambda: (
            psycopg.connect(_dsn(), autocommit=True)
            .execute("SELECT count(*) FROM trace_lock")
            .fetchall()
        ),
        daemon=True,
    )
    tracer = Tracer(
        _Procs({"spin": spin, "idle": idle}), _dsn(), tmp_path / "t.csv", 0.05
    )
    try:
        blocked.start()
        spent_before = proc_cpu(spin.pid)
        tracer.start()
        time.sleep(1.0)
    finally:
        path = tracer.stop()
        spent = proc_cpu(spin.pid) - spent_before
        holder.rollback()  # lets the blocked reader through
        holder.execute("DROP TABLE trace_lock")
        holder.commit()
        holder.close()
        spin.kill()
        idle.kill()
        blocked.join(5)
    rows = list(csv.DictReader(path.open()))
    assert len(rows) >= 10
    mean = {k: sum(float(r[k]) for r in rows) / len(rows) for k in rows[0]}
    # What the tracer saw the spinner use matches what it used (the machine
    # may be busy: how much it got is not the point, seeing it is).
    window = float(rows[-1]["unix"]) - float(rows[0]["unix"]) + 0.05
    assert spent > 0.1
    assert abs(mean["cpu.spin"] * window - spent) <= 0.35 * spent
    assert mean["cpu.idle"] < 0.05
    assert mean["wait.Lock:relation"] >= 0.9  # the reader waited all along
    assert 0 < mean["cpu.machine.busy"] <= 2.05


def test_machine_cpu_counts_only_go_up():
    first = machine_cpu()
    sum(range(3_000_000))
    second = machine_cpu()
    assert set(first) == {"busy", "idle", "iowait", "steal"}
    assert second["busy"] >= first["busy"]
    assert all(second[k] >= first[k] for k in first)


def test_per_second_lines_requests_up_with_the_trace(tmp_path):
    start = 1_700_000_000.0
    timeline = tmp_path / "timeline.csv"
    with timeline.open("w") as fh:
        fh.write("due_s,latency_ms,service_ms,due_unix\n")
        for i in range(100):  # second 0: fast; second 1: one slow request
            due = i / 50
            latency = 900.0 if i == 75 else 5.0
            fh.write(f"{due:.3f},{latency},{latency},{start + due:.3f}\n")
    trace = tmp_path / "trace.csv"
    with trace.open("w") as fh:
        fh.write("unix,cpu.web,wait.IO:WALSync\n")
        fh.write(f"{start + 0.5},0.5,0\n{start + 1.2},1.0,2\n{start + 1.7},0.6,4\n")
    rows = per_second(timeline, trace)
    assert [r["s"] for r in rows] == [0, 1]
    assert [r["requests"] for r in rows] == [50, 50]
    assert rows[0]["p99_ms"] == 5.0
    assert rows[1]["p99_ms"] == 900.0
    assert rows[1]["cpu.web"] == 0.8  # the mean of the second's samples
    assert rows[1]["wait.IO:WALSync"] == 3.0


@pytest.mark.parametrize(
    ("cmdline", "kind"),
    [
        ("postgres: 15/main: checkpointer ", "checkpointer"),
        ("postgres: checkpointer ", "checkpointer"),
        ("postgres: 15/main: background writer ", "background"),
        ("postgres: 15/main: autovacuum worker surge_bench", "autovacuum"),
        ("postgres: walwriter ", "walwriter"),
        ("postgres: 15/main: postgres surge 127.0.0.1(5432) idle", "backend"),
        ("postgres: postgres surge [local] SELECT", "backend"),
        ("/usr/lib/postgresql/15/bin/postgres -D /var/lib/x", "postmaster"),
    ],
)
def test_postgres_processes_are_told_apart(cmdline, kind):
    assert postgres_kind(cmdline) == kind
