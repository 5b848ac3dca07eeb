"""What the machine did, tenth of a second by tenth of a second (``--trace``).

A slow request says only that it was slow. The tracer samples, every
``interval`` seconds, each stack process tree's CPU, PostgreSQL's by kind
(backends, checkpointer, WAL writer, autovacuum, ...), and what the bench
database's active backends were waiting on (pg_stat_activity), into
``bench/out/trace-<scenario>.csv``. It finds the processes again every second
(a walk of all of /proc) and reads only theirs in between: ~2% of a core. ``python -m bench.trace TIMELINE TRACE``
then lines the two up second by second: request count, p99, the CPU of each
part, and the waits, so an episode of slow requests can be read against what
ran at that moment.
"""

import argparse
import csv
import os
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import psycopg

from bench.pgcpu import proc_cpu

_TICK = os.sysconf("SC_CLK_TCK")


_BACKGROUND = (
    "checkpointer",
    "walwriter",
    "autovacuum",
    "background writer",
    "logical replication",
    "archiver",
)


def postgres_kind(cmdline: str) -> str:
    """'checkpointer', 'walwriter', 'autovacuum', ... or 'backend', from a
    PostgreSQL process's command line ('postgres: [15/main: ]checkpointer')."""
    if not cmdline.startswith("postgres: "):
        return "postmaster"
    what = cmdline[len("postgres: ") :]
    cluster, sep, rest = what.partition(": ")
    if sep and "/" in cluster:  # Debian names the cluster first
        what = rest
    for kind in _BACKGROUND:
        if what.startswith(kind):
            return kind.split()[0]
    return "backend"


def _postgres_kind(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "gone"
    return postgres_kind(cmd)


def machine_cpu() -> dict[str, float]:
    """Seconds the whole machine spent busy, idle, waiting on I/O and stolen
    by the hypervisor (/proc/stat): steal is CPU a virtual machine was due and
    did not get, and it shows up as every process running slower."""
    fields = [
        int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ]
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    return {
        "busy": (user + nice + system + irq + softirq) / _TICK,
        "idle": idle / _TICK,
        "iowait": iowait / _TICK,
        "steal": steal / _TICK,
    }


class Tracer:
    """Samples in a thread; ``stop()`` writes the CSV and returns its path."""

    def __init__(
        self, stack, dsn: str, path: Path, interval: float = 0.1, rescan: float = 1.0
    ):
        self.stack, self.dsn, self.path, self.interval = stack, dsn, path, interval
        self.rescan = rescan
        self.rows: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trace", daemon=True)
        self._kinds: dict[int, str] = {}
        # Which pids to read, by column: found by a walk of all of /proc
        # (~5 ms) every ``rescan`` seconds; each sample reads only these.
        self._columns: dict[str, list[int]] = {}
        self._own_only: set[int] = set()
        self._scanned_at = float("-inf")

    def start(self) -> None:
        self._thread.start()

    def _scan(self) -> None:
        trees, info = self.stack.process_trees()
        columns: dict[str, list[int]] = dict(trees)
        columns["bench"] = [os.getpid()]  # the load generator (and this sampler)
        own_only = set()
        for pid, (comm, _) in info.items():
            if comm.startswith("postgres"):
                kind = self._kinds.get(pid)
                if kind is None:
                    kind = self._kinds[pid] = _postgres_kind(pid)
                columns.setdefault(f"pg.{kind}", []).append(pid)
                # Its own time only: the postmaster's would count every
                # backend that ended (reaped children) a second time.
                own_only.add(pid)
            elif comm.startswith("redis-server"):
                columns.setdefault("redis", []).append(pid)
        self._columns, self._own_only = columns, own_only
        self._scanned_at = time.monotonic()

    def _cpu(self) -> Counter:
        if time.monotonic() - self._scanned_at >= self.rescan:
            self._scan()
        out: Counter = Counter()
        for column, pids in self._columns.items():
            for pid in pids:
                cpu = proc_cpu(pid, children=pid not in self._own_only)
                if cpu is not None:  # gone since the scan
                    out[column] += cpu
        for name, seconds in machine_cpu().items():
            out[f"machine.{name}"] = seconds
        return out

    def _run(self) -> None:
        conn = psycopg.connect(self.dsn, autocommit=True, application_name="trace")
        try:
            before, t_before = self._cpu(), time.time()
            while not self._stop.wait(self.interval):
                waits = conn.execute(
                    "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU'), "
                    "count(*) FROM pg_stat_activity WHERE state = 'active' "
                    "AND datname = current_database() AND pid <> pg_backend_pid() "
                    "GROUP BY 1"
                ).fetchall()
                now_cpu, now = self._cpu(), time.time()
                span = max(now - t_before, 1e-6)
                row: dict = {"unix": round(now, 3)}
                for key in set(now_cpu) | set(before):
                    # A process that ended takes its CPU with it: never negative.
                    delta = max(now_cpu.get(key, 0.0) - before.get(key, 0.0), 0.0)
                    row[f"cpu.{key}"] = round(delta / span, 2)
                for wait, n in waits:
                    row[f"wait.{wait}"] = n
                self.rows.append(row)
                before, t_before = now_cpu, now
        except psycopg.Error:
            return  # the database went away with the stack
        finally:
            conn.close()

    def stop(self) -> Path:
        self._stop.set()
        self._thread.join(5)
        keys = sorted({k for row in self.rows for k in row} - {"unix"})
        with self.path.open("w", newline="") as fh:
            out = csv.DictWriter(fh, ["unix", *keys], restval=0)
            out.writeheader()
            out.writerows(self.rows)
        return self.path


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]


def per_second(timeline: Path, trace: Path) -> list[dict]:
    """One row per second of the run: requests due, their p99 latency (ms),
    the mean CPU (cores) of each part, and the mean count of each wait."""
    lat: dict[int, list[float]] = defaultdict(list)
    start = None
    with timeline.open() as fh:
        for row in csv.DictReader(fh):
            due_unix = float(row["due_unix"])
            if start is None:
                start = due_unix - float(row["due_s"])
            lat[int(due_unix - start)].append(float(row["latency_ms"]))
    if start is None:
        return []
    sums: dict[int, Counter] = defaultdict(Counter)
    counts: Counter = Counter()
    with trace.open() as fh:
        for row in csv.DictReader(fh):
            second = int(float(row.pop("unix")) - start)
            counts[second] += 1
            for key, value in row.items():
                sums[second][key] += float(value)
    out = []
    for second in sorted(set(lat) | set(counts)):
        n = counts[second] or 1
        out.append(
            {
                "s": second,
                "requests": len(lat.get(second, [])),
                "p99_ms": round(_percentile(lat.get(second, []), 99), 1),
                **{k: round(v / n, 2) for k, v in sorted(sums[second].items())},
            }
        )
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.trace", description=__doc__)
    p.add_argument("timeline", type=Path, help="bench/out/<scenario>-timeline.csv")
    p.add_argument("trace", type=Path, help="bench/out/trace-<scenario>.csv")
    p.add_argument(
        "--slower-than", type=float, default=0.0,
        help="only the seconds whose p99 is above this many ms",
    )  # fmt: skip
    args = p.parse_args(argv)
    for path in (args.timeline, args.trace):
        if not path.is_file():
            p.error(f"{path}: no such file")
    rows = per_second(args.timeline, args.trace)
    # Columns that are never more than noise are left out of the table.
    keys = [
        k
        for k in dict.fromkeys(k for row in rows for k in row)
        if k in ("s", "requests", "p99_ms")
        or max(float(row.get(k, 0)) for row in rows) >= 0.1
    ]
    short = [k.replace("cpu.", "").replace("wait.", "w.") for k in keys]
    print("\t".join(short))
    for row in rows:
        if row["p99_ms"] >= args.slower_than:
            print("\t".join(str(row.get(k, 0)) for k in keys))
    return 0


if __name__ == "__main__":
    sys.exit(main())
