"""The benchmark's stack: processes meant to yield the CPU really do, and a
run on anything but `make bench`'s stack says so in its row."""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import bench.__main__ as bench_main
from bench.__main__ import (
    POSTGRES_SETTINGS,
    STACK_ENV,
    Stack,
    _nice_autogroup,
    autogroup_nice,
    parse_autogroup,
    parser,
    postgres_settings,
    rss_growth_per_payment,
    stack_variant,
)

needs_autogroup = pytest.mark.skipif(
    not Path("/proc/self/autogroup").exists(),
    reason="the kernel has no autogroup scheduling: nice -n alone applies",
)


def _autogroup_nice(pid: int) -> int:
    nice = autogroup_nice(pid)
    assert nice is not None, f"/proc/{pid}/autogroup names no autogroup"
    return nice


@needs_autogroup
def test_a_niced_stack_process_gets_its_session_niced_children_included():
    # A process in a session of its own, as the bench starts every one, with a
    # child forked after the session was niced (Celery's prefork pool).
    proc = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys, time; time.sleep(0.5);"
         "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']);"
         "print(child.pid, flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    # The caller may be in the root group (a CI runner's process), which reads
    # empty: compare its text, whatever it is.
    own = Path("/proc/self/autogroup").read_text()
    try:
        assert _autogroup_nice(proc.pid) == 0  # a new session starts at 0
        _nice_autogroup(proc.pid, 10)
        assert _autogroup_nice(proc.pid) == 10
        child = int(proc.stdout.readline())
        assert _autogroup_nice(child) == 10
        assert (
            Path("/proc/self/autogroup").read_text() == own
        )  # not the caller's session
    finally:
        subprocess.run(["pkill", "-KILL", "-s", str(proc.pid)], check=False)
        proc.wait()


def test_a_process_that_is_gone_is_skipped():
    proc = subprocess.Popen(["true"], start_new_session=True)
    proc.wait()
    _nice_autogroup(proc.pid, 10)  # reaped: no /proc entry, nothing to raise


def test_the_autogroup_line_is_read_and_an_empty_one_means_none():
    assert parse_autogroup("/autogroup-85 nice 0\n") == 0
    assert parse_autogroup("/autogroup-7 nice -5\n") == -5
    assert parse_autogroup("/autogroup-7 nice 19") == 19
    # A process in a cpu cgroup of its own (a container, a CI runner) reads empty.
    assert parse_autogroup("") is None
    assert parse_autogroup("garbage") is None


def test_a_process_that_is_gone_has_no_autogroup():
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert autogroup_nice(proc.pid) is None


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench", "--scenario", "baseline", *args],
        capture_output=True, text=True, timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip


def test_a_second_run_on_the_same_databases_is_refused_before_it_starts():
    # The first run holds the locks (as a running bench does); the second
    # would drop the first one's database and flush its broker.
    from bench.__main__ import bench_locks

    locks = bench_locks("surge_bench_locktest", 14)
    assert locks is not None
    try:
        done = _bench("--db", "surge_bench_locktest", "--redis-db", "14")
        assert done.returncode == 2
        assert "another bench run is using database surge_bench_locktest" in done.stderr
        assert "starting the stack" not in done.stdout
        # The same PostgreSQL database with another Redis one: refused too.
        assert (
            _bench("--db", "surge_bench_locktest", "--redis-db", "13").returncode == 2
        )
    finally:
        for fh in locks:
            fh.close()
    assert bench_locks("surge_bench_locktest", 14) is not None  # free again


def test_the_ratio_is_read_against_the_mean_of_both_baselines():
    from bench.__main__ import BASELINE_SPREAD, baseline_ratio

    assert baseline_ratio(300.0, 600.0, None) == (0.5, None)
    ratio, spread = baseline_ratio(344.3, 437.4, 600.0)
    assert round(ratio, 3) == round(344.3 / 518.7, 3)
    assert spread > BASELINE_SPREAD  # the machine changed speed: flagged
    ratio, spread = baseline_ratio(400.0, 640.0, 660.0)
    assert round(ratio, 3) == round(400 / 650, 3)
    assert spread < BASELINE_SPREAD


def _args(*argv: str):
    return parser().parse_args(list(argv))


def test_make_bench_stack_is_no_variant():
    assert stack_variant(_args("--scenario", "all"), parser(), {"HOME": "/root"}) == ""


def test_every_option_off_its_default_is_named():
    args = _args("--web-workers", "4", "--web-threads", "4", "--pipeline-nice", "10",
                 "--latency-ms", "1-2", "--baseline-requests", "0", "--trace")  # fmt: skip
    assert stack_variant(args, parser(), {}) == (
        "--pipeline-nice 10, --web-workers 4, --web-threads 4, --latency-ms 1-2, "
        "no baseline, traced"
    )


def test_inherited_settings_are_named_and_the_stacks_own_are_not():
    env = {
        "MALLOC_ARENA_MAX": "2",
        "SURGE_TASK_BATCH_SIZE": "7",  # the stack sets it from --task-batch
        "DATABASE_URL": "postgres://elsewhere/x",  # the stack sets its own
        "GATEWAY_BULKHEAD_SIZE": "8",
        "PATH": "/usr/bin",
    }
    assert stack_variant(_args(), parser(), env) == (
        "GATEWAY_BULKHEAD_SIZE=8, MALLOC_ARENA_MAX=2"
    )


def test_the_names_the_stack_sets_itself_are_exactly_its_own(monkeypatch):
    monkeypatch.setattr("os.environ", {})
    assert set(Stack(_args()).env) == STACK_ENV


def test_rss_growth_is_read_per_payment_over_the_second_half():
    # A worker that starts its pools in the first minutes, then keeps 1 MiB
    # per 300 s at 500 payments/s; a tree that grows with every payment.
    samples = []
    for t in range(30, 601, 30):
        worker = 470.0 + min(t, 120) / 12 + (max(t, 300) - 300) / 300
        samples.append((t, {"worker": worker, "leaky": 100.0 + t / 10}))
    growth = rss_growth_per_payment(samples, rate=500)
    assert growth["worker"] == round(2**20 / (500 * 300), 1)  # 7.0 bytes
    assert growth["leaky"] == round(30 * 2**20 / (500 * 300), 1)  # 209.7


def test_rss_growth_needs_three_samples_and_a_rate():
    two = [(30, {"web": 1.0}), (60, {"web": 2.0})]
    assert rss_growth_per_payment(two, rate=500) == {}
    assert rss_growth_per_payment([*two, (90, {"web": 3.0})], rate=0) == {}


@pytest.mark.django_db
def test_a_row_records_the_servers_settings():
    settings = postgres_settings()
    assert set(settings) == set(POSTGRES_SETTINGS)
    assert settings["synchronous_commit"] in (
        "on",
        "off",
        "local",
        "remote_write",
        "remote_apply",
    )
    assert settings["max_wal_size"][-2:] in ("MB", "GB", "TB")


def _row(scenario: str, **extra) -> dict:
    return {
        "when": "2026-12-04 15:12", "scenario": scenario, "machine": "2 cores",
        "ok": 1000, "accepted_per_s": 690.0, "intake_p50_ms": 4.4,
        "intake_p95_ms": 13.5, "intake_p99_ms": 29.6, "errors": {},
        "checks": {"reconcile clean": True}, **extra,
    }  # fmt: skip


def test_a_burst_row_shows_the_ratio_and_a_steady_row_the_baselines_p99(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(bench_main, "RESULTS", tmp_path / "RESULTS.md")
    base = {"requests_per_s": 690.0, "intake_p99_ms": 32.0}
    bench_main._append(
        _row(
            "burst-single",
            baseline={**base, "requests_per_s": 1505.1},
            baseline_after={**base, "requests_per_s": 1599.2},
            intake_vs_baseline=0.635,
        )
    )
    bench_main._append(_row("steady", baseline=base))
    bench_main._append(_row("burst-batch"))
    text = (tmp_path / "RESULTS.md").read_text()
    burst, steady, batch = [line.split(" | ")[5] for line in text.splitlines()[-3:]]
    assert burst == "1505.1 / 1599.2 after (64%)"
    assert steady == "690.0 (its p99 32.0 ms)"
    assert batch == "-"
    assert text.count("| when (UTC) |") == 1  # the header once, above the rows


def test_steady_gets_no_ratio_both_run_at_its_fixed_rate():
    rows = {"baseline": {"requests_per_s": 690.0}}
    load = SimpleNamespace(ok=6900, duration=10.0)
    bench_main._ratio(SimpleNamespace(scenario="steady"), None, load, 6900, rows)
    assert "intake_vs_baseline" not in rows
    bench_main._ratio(SimpleNamespace(scenario="burst-batch"), None, load, 6900, rows)
    assert rows["intake_vs_baseline"] == 1.0  # a burst is read as a ratio
