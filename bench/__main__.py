"""The salary-day benchmark: a real burst against the production-like stack.

    python -m bench --scenario burst-batch            (make bench)
    python -m bench --scenario all                    (batch, single, steady)
    python -m bench --scenario burst-single --rate 600
    python -m bench --scenario steady --rate 300 --duration 180
    python -m bench --scenario baseline --rate 800

It creates a fresh database, starts the web server (granian, as in production;
gunicorn gthread with --server gunicorn), Celery workers, the
relay, beat and the gateway simulator (20-50 ms latency) itself, drives the
load, waits until every accepted payment is final, verifies (all final, no
duplicates, one gateway charge per settled payment, reconcile and the events'
audit clean), prints a table, writes every figure to
bench/out/<scenario>-result.json and appends a row to bench/RESULTS.md.
"""

import argparse
import asyncio
import fcntl
import json
import os
import platform
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

from bench.loadgen import LoadResult, percentile, run_open_loop
from bench.pgcpu import BackendCPU
from bench.processes import Processes, free_port, wait_port
from bench.trace import Tracer
from core.ratelimit import policy_headers

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
BIN = Path(PY).parent
OUT = ROOT / "bench" / "out"
RESULTS = ROOT / "bench" / "RESULTS.md"
CARDS = ["4242424242424242"]


# The names the bench's own tools (memcheck) import.
_free_port = free_port
_wait_port = wait_port


def autogroup_nice(pid: int) -> int | None:
    """The nice value of a process's autogroup, or None where none schedules it.

    None when the kernel has no autogroup scheduling, when the process is gone,
    and when the process is in the root group: a session that no setsid()
    started since boot, such as init's, or a process that a container or a CI
    runner started without a session of its own. /proc/<pid>/autogroup then
    reads empty, and the process's own nice value ranks it at the top level.
    """
    try:
        text = Path(f"/proc/{pid}/autogroup").read_text()
    except OSError:
        return None
    return parse_autogroup(text)


def parse_autogroup(text: str) -> int | None:
    """The nice value in /proc/<pid>/autogroup's text ("/autogroup-123 nice 10")."""
    fields = text.split()
    if len(fields) != 3 or fields[1] != "nice":
        return None
    return int(fields[2])


def _nice_autogroup(pid: int, nice: int) -> None:
    """Give a process's session (its autogroup) the niceness ``nice``.

    With the kernel's autogroup scheduling on (sched_autogroup_enabled, the
    default on desktop and many server kernels), CPU is shared fairly between
    sessions first, and a process's own nice value only ranks it within its
    session. Every stack process runs in a session of its own, so ``nice -n``
    alone changed nothing between them (measured: two spinning processes on
    one core split it 51/49 with one at nice 10, 87/13 with its session's
    autogroup at nice 10). The session's nice value is written here; its
    children (Celery's prefork pool) share the session and so the value.
    """
    if autogroup_nice(pid) is None:  # no autogroup over it: nice -n already applies
        return
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))
    except OSError as exc:
        print(f"(could not nice the session of {pid}: {exc}; nice -n only)")


# What the stack's environment sets whatever the bench's own says.
STACK_ENV = frozenset({
    "DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "SURGE_ENV",
    "DJANGO_SETTINGS_MODULE",
    "LOG_LEVEL", "SURGE_TASK_BATCH_SIZE", "CELERY_PREFETCH",
    "SURGE_SWEEP_AFTER_SECONDS", "GATEWAY_SIMULATOR_URLS", "PROMETHEUS_MULTIPROC_DIR",
})  # fmt: skip


class Stack:
    """Every process of the stack, each in its own session, logs under bench/out."""

    def __init__(self, args):
        self.args = args
        self.db = args.db
        self.web_port = _free_port()
        self.sim_port = _free_port()
        redis_db = args.redis_db
        self.env = {
            **os.environ,
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{self.db}",
            "CELERY_BROKER_URL": f"redis://127.0.0.1:6379/{redis_db}",
            "REDIS_URL": f"redis://127.0.0.1:6379/{redis_db}",
            "SURGE_ENV": "bench",
            # The product's settings plus bench/baseline (bench/urls.py).
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "LOG_LEVEL": "WARNING",
            "SURGE_TASK_BATCH_SIZE": str(args.task_batch),
            "CELERY_PREFETCH": str(args.prefetch),
            "SURGE_SWEEP_AFTER_SECONDS": "60",
            "GATEWAY_SIMULATOR_URLS": f"simulator=http://127.0.0.1:{self.sim_port}",
            "PROMETHEUS_MULTIPROC_DIR": str(OUT / "prometheus"),
        }
        self.processes = Processes(cwd=ROOT, env=self.env, logs=OUT)
        self.procs: dict[str, subprocess.Popen] = self.processes.procs
        self.pg_cpu: BackendCPU | None = None

    def run(self, *argv: str) -> str:
        done = subprocess.run(
            argv, cwd=ROOT, env=self.env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{argv} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def start(self, name: str, *argv: str, nice: int = 0) -> None:
        if nice:
            argv = ("nice", "-n", str(nice), *argv)
        proc = self.processes.start(name, argv)
        if nice:
            _nice_autogroup(proc.pid, nice)

    def up(self) -> None:
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "prometheus").mkdir(exist_ok=True)
        for f in (OUT / "prometheus").glob("*.db"):
            f.unlink()
        subprocess.run(
            ["redis-cli", "-n", str(self.args.redis_db), "FLUSHDB"],
            check=True, capture_output=True,
        )  # fmt: skip
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc",
             f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)"],
            check=True, capture_output=True,
        )  # fmt: skip
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"CREATE DATABASE {self.db}"],
            check=True, capture_output=True,
        )  # fmt: skip
        self.run(PY, "manage.py", "migrate", "--noinput", "-v", "0")
        self.run(PY, "-c", _BASELINE_DDL)
        lo, hi = self.args.latency_ms
        self.start(
            "simulator", PY, "manage.py", "run_gateway_simulator",
            "--port", str(self.sim_port), "--latency-ms", f"{lo}-{hi}",
            nice=self.args.pipeline_nice,
        )  # fmt: skip
        self.start("web", *web_server_argv(self.args, self.web_port))
        pipeline = not self.args.intake_only
        for i in range(self.args.workers if pipeline else 0):
            self.start(
                f"worker{i}", str(BIN / "celery"), "-A", "config", "worker",
                "-Q", "validate,execute,settle,default", "-P", self.args.pool,
                "-c", str(self.args.concurrency), "-n", f"bench{i}@%h",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
                "--loglevel", "WARNING", nice=self.args.pipeline_nice,
            )  # fmt: skip
        for i in range(self.args.relays if pipeline else 0):
            self.start(
                f"relay{i}", PY, "manage.py", "run_relay", "--poll-seconds", "0.5",
                nice=self.args.pipeline_nice,
            )  # fmt: skip
        if pipeline:
            self.start(
                "beat", str(BIN / "celery"), "-A", "config", "beat",
                "--loglevel", "WARNING", "--schedule", str(OUT / "beat-schedule"),
            )  # fmt: skip
        _wait_port(self.sim_port)
        _wait_port(self.web_port)
        time.sleep(2)  # workers connect to the broker
        self.pg_cpu = BackendCPU(self.env["DATABASE_URL"])
        self.pg_cpu.start()

    def process_trees(
        self,
    ) -> tuple[dict[str, list[int]], dict[int, tuple[str, float]]]:
        """Each stack process's tree of pids, and every pid's (name, CPU seconds)."""
        tick = os.sysconf("SC_CLK_TCK")
        children: dict[int, list[int]] = {}
        info: dict[int, tuple[str, float]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
                comm = text[text.index("(") + 1 : text.rindex(")")]
                rest = text[text.rindex(")") + 2 :].split()
                pid = int(stat.parent.name)
                children.setdefault(int(rest[1]), []).append(pid)
                # utime, stime, cutime, cstime (reaped children count too)
                info[pid] = (comm, sum(int(x) for x in rest[11:15]) / tick)
            except (OSError, ValueError, IndexError):
                continue
        trees: dict[str, list[int]] = {}
        for name, proc in self.procs.items():
            todo, tree = [proc.pid], []
            while todo:
                pid = todo.pop()
                tree.append(pid)
                todo.extend(children.get(pid, []))
            trees[name] = tree
        return trees, info

    @staticmethod
    def _status_kb(pid: int, field: str) -> int:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(field):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def rss_mb(self) -> dict[str, float]:
        """Current RSS of each process tree (sum over the tree), in MiB."""
        trees, _ = self.process_trees()
        return {
            name: round(sum(self._status_kb(p, "VmRSS:") for p in tree) / 1024, 1)
            for name, tree in trees.items()
        }

    def peak_memory_mb(self) -> dict[str, float]:
        """Peak RSS (VmHWM) of the largest process in each tree, in MiB."""
        trees, _ = self.process_trees()
        return {
            name: round(
                max((self._status_kb(p, "VmHWM:") for p in tree), default=0) / 1024, 1
            )
            for name, tree in trees.items()
        }

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user+system) used so far by each process tree, and by all
        PostgreSQL and Redis server processes together."""
        trees, info = self.process_trees()
        out = {
            name: round(sum(info.get(p, ("", 0.0))[1] for p in tree), 1)
            for name, tree in trees.items()
        }
        for server in ("postgres", "redis-server"):
            out[server] = round(
                sum(cpu for comm, cpu in info.values() if comm.startswith(server)), 1
            )
        # PostgreSQL's time by the process it served (application_name),
        # backends that came and went during the run included.
        if self.pg_cpu is not None:
            try:
                for app, seconds in self.pg_cpu.totals().items():
                    out[f"postgres[{app}]"] = round(seconds, 1)
            except Exception as exc:  # the breakdown is a nicety, never fatal
                print(f"(no PostgreSQL breakdown: {exc})")
        return out

    def down(self) -> None:
        if self.pg_cpu is not None:
            self.pg_cpu.stop()
        self.processes.stop_all()


def web_server_argv(args, port: int) -> list[str]:
    """The web tier: granian (the product's server since issue #21: HTTP parsed
    in Rust) or gunicorn gthread (the one before), each with
    ``--web-workers`` processes of ``--web-threads`` threads."""
    if args.server == "granian":
        return [
            str(BIN / "granian"), "--interface", "wsgi", "--host", "127.0.0.1",
            "--port", str(port), "--workers", str(args.web_workers),
            "--blocking-threads", str(args.web_threads), "--backlog", "4096",
            "--log-level", "warning", "--no-ws", "config.wsgi:application",
        ]  # fmt: skip
    return [
        str(BIN / "gunicorn"), "config.wsgi:application",
        "-b", f"127.0.0.1:{port}", "-k", "gthread",
        "-w", str(args.web_workers), "--threads", str(args.web_threads),
        "--backlog", "4096", "--log-level", "warning",
    ]  # fmt: skip


_BASELINE_DDL = (
    "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE','bench.settings');"
    "django.setup(); from django.db import connection; from bench.baseline import DDL;"
    "connection.cursor().execute(DDL)"
)


def _django(env: dict) -> None:
    """Configure this process's Django on the bench database (for setup and checks)."""
    os.environ.update(
        {
            k: env[k]
            for k in (
                "DATABASE_URL",
                "CELERY_BROKER_URL",
                "REDIS_URL",
                "SURGE_ENV",
                "DJANGO_SETTINGS_MODULE",
                "PROMETHEUS_MULTIPROC_DIR",
            )
        }
    )
    import django

    django.setup()


def rate_limiter_cpu_us(
    merchant_id: str, n: int = 1000, rate: float = 400
) -> float | None:
    """CPU a request spends in the rate limiter (its buckets, the Redis script
    or the process's lease, and the response fields), measured in this process
    against the stack's Redis at ``rate`` requests a second (sleeping costs no
    CPU): what the throttle adds to an API request of a busy key. None when
    off."""
    # deferred: Django is set up at run time (see setup_merchants).
    from payments.api.throttling import buckets_for, limiter
    from payments.models import Merchant

    active = limiter()
    if active is None:
        return None
    merchant = Merchant.objects.get(pk=merchant_id)
    buckets = buckets_for(merchant, "bench-limiter", 1)
    try:
        for _ in range(50):  # warm: the script is loaded, the connection open
            active.take(buckets)
        spent = 0.0
        for _ in range(n):
            start = time.process_time()
            policy_headers(active.take(buckets))
            spent += time.process_time() - start
            time.sleep(1 / rate)
        return round(spent * 1e6 / n, 1)
    finally:
        active.reset(buckets)


def setup_merchants(n: int) -> list[tuple[str, str, str]]:
    """(merchant id, secret key, token id) for n merchants routed to the simulator."""
    # deferred: Django is set up at run time, on the database the options name
    # (_django); modules with models load after that.
    from payments.services.keys import merchant_create
    from vault.services import token_create

    out = []
    for i in range(n):
        merchant, secret = merchant_create(
            name=f"Bench {i}", primary_gateway="simulator", max_amount=10**9
        )
        token = token_create(
            merchant_id=merchant.id,
            number=CARDS[0],
            exp_month=12,
            exp_year=2099,
            cvc="123",
        )
        out.append((merchant.id, secret, token.pk))
    return out


def _payment_body(token: str, amount: int, reference: str | None = None) -> dict:
    body = {"amount": amount, "currency": "usd", "source": token}
    if reference:
        body["reference"] = reference
    return body


def load_single(
    stack: Stack, merchants, total: int, rate: float, run_id: str, warmup: int = 0
) -> LoadResult:
    def make(i: int):
        _, secret, token = merchants[i % len(merchants)]
        body = json.dumps(_payment_body(token, 1000 + i % 5000)).encode()
        return "POST", "/v1/payments", {
            "Authorization": f"Bearer {secret}",
            "Content-Type": "application/json",
            # Letters between the parts: a run of 13+ digits (run id + counter)
            # would look like a card number and be refused, as it should be.
            "Idempotency-Key": f"{run_id}k{i}",
        }, body  # fmt: skip

    return asyncio.run(
        run_open_loop(
            host="127.0.0.1", port=stack.web_port, total=total, rate=rate,
            make_request=make, connections=stack.args.connections, warmup=warmup,
        )
    )  # fmt: skip


def save_timeline(name: str, load: LoadResult) -> Path:
    """Every ok request as (due s, latency ms, service ms, due as Unix time):
    bench/out/NAME.csv. The Unix time lines a slow request up with what else
    the machine did then (vmstat -t, a CPU sampler, PostgreSQL's log)."""
    path = OUT / f"{name}-timeline.csv"
    with path.open("w") as fh:
        fh.write("due_s,latency_ms,service_ms,due_unix\n")
        for due, latency, service in sorted(load.timeline):
            fh.write(
                f"{due:.3f},{latency * 1000:.1f},{service * 1000:.1f},"
                f"{load.started + due:.3f}\n"
            )
    return path


def load_batch(stack: Stack, merchants, total: int, run_id: str) -> LoadResult:
    size = 1000
    batches = total // size

    def make(b: int):
        _, secret, token = merchants[b % len(merchants)]
        items = [
            _payment_body(token, 1000 + i % 5000, reference=f"{run_id}b{b}p{i}")
            for i in range(size)
        ]
        return "POST", "/v1/payment_batches", {
            "Authorization": f"Bearer {secret}",
            "Content-Type": "application/json",
            "Idempotency-Key": f"{run_id}batch{b}",
        }, json.dumps({"payments": items}).encode()  # fmt: skip

    # Offered as fast as 4 connections take them: a payroll provider uploading.
    return asyncio.run(
        run_open_loop(
            host="127.0.0.1", port=stack.web_port, total=batches, rate=1000,
            make_request=make, connections=4,
        )
    )  # fmt: skip


def load_baseline(stack: Stack, total: int, rate: float) -> LoadResult:
    def make(i: int):
        body = json.dumps({"amount": 1000 + i, "currency": "usd"}).encode()
        return "POST", "/bench/baseline", {"Content-Type": "application/json"}, body

    return asyncio.run(
        run_open_loop(
            host="127.0.0.1", port=stack.web_port, total=total, rate=rate,
            make_request=make, connections=stack.args.connections,
        )
    )  # fmt: skip


def wait_final(expected: int, timeout: float) -> float:
    """Wait until ``expected`` payments exist and all are final; return when."""
    # deferred: Django is set up at run time, on the database the options name
    # (_django); modules with models load after that.
    from payments.models import OpenPayment, Payment

    # Counting payments by status scans the whole table (status has no index,
    # so transitions stay HOT): twice a second that cost PostgreSQL 4.3 CPU s
    # in a 100,000-payment burst, taken from the pipeline it was waiting for.
    # The open list holds only what is not final; the total is read until
    # everything accepted is there (at once: accepted means committed). The
    # verification afterwards counts every status from the payments table.
    deadline = time.monotonic() + timeout
    total = open_ = 0
    while time.monotonic() < deadline:
        if total < expected:
            total = Payment.objects.count()
        open_ = OpenPayment.objects.count()
        if total >= expected and open_ == 0:
            return time.time()
        time.sleep(0.5)
    raise RuntimeError(f"not final after {timeout}s: {open_} of {total} open")


def db_figures() -> dict:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT count(*), count(*) FILTER (WHERE status = 'settled'),
                   min(created_at), max(created_at), max(settled_at),
                   percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP
                     (ORDER BY extract(epoch FROM settled_at - created_at))
                     FILTER (WHERE status = 'settled')
            FROM payments_payment
            """
        )
        n, settled, first, last_accept, last_settled, pcts = cursor.fetchone()
        cursor.execute("SELECT status, count(*) FROM payments_payment GROUP BY 1")
        by_status = dict(cursor.fetchall())
    return {
        "payments": n,
        "settled": settled,
        "by_status": by_status,
        "first_accept": first,
        "last_accept": last_accept,
        "last_settled": last_settled,
        "settle_p50": pcts[0] if pcts else None,
        "settle_p95": pcts[1] if pcts else None,
        "settle_p99": pcts[2] if pcts else None,
    }


# The server's settings that move the figures: a row records them, since the
# bench runs on whatever PostgreSQL the machine has.
POSTGRES_SETTINGS = (
    "server_version", "synchronous_commit", "fsync", "full_page_writes",
    "wal_compression", "max_wal_size", "checkpoint_timeout", "shared_buffers",
    "autovacuum",
)  # fmt: skip


def postgres_settings() -> dict[str, str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s)",
            [list(POSTGRES_SETTINGS)],
        )
        return dict(sorted(cursor.fetchall()))


def simulator_records(port: int) -> list[dict]:
    """The simulator's own log of charges and refunds (GET /v1/records)."""
    with urllib.request.urlopen(
        f"http://127.0.0.1:{port}/v1/records", timeout=60
    ) as resp:
        records = json.loads(resp.read())
    return records["data"] if isinstance(records, dict) else records


def charges_by_payment(records: list[dict]) -> dict[str, int]:
    """Succeeded charges per payment id, from a gateway's own records."""
    by_payment: dict[str, int] = {}
    for row in records:
        if row.get("kind") == "charge" and row.get("status") == "succeeded":
            pid = row.get("payment_id") or row.get("metadata", {}).get("payment_id")
            by_payment[pid] = by_payment.get(pid, 0) + 1
    return by_payment


def verify(stack: Stack, expected: int) -> dict:
    """All final, no duplicates, one gateway charge per settled payment,
    reconcile and the events' audit clean."""
    from django.db import connection

    # deferred: Django is set up at run time, on the database the options name
    # (_django); modules with models load after that.
    from payments.models import Payment
    from payments.state import NON_TERMINAL

    checks = {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM (SELECT merchant_id, reference FROM payments_payment "
            "WHERE reference IS NOT NULL GROUP BY 1, 2 HAVING count(*) > 1) d"
        )
        dupes = cursor.fetchone()[0]
    checks["accepted == stored"] = Payment.objects.count() == expected
    # From the payments themselves, not the open list wait_final watched.
    checks["every payment final"] = not Payment.objects.filter(
        status__in=NON_TERMINAL
    ).exists()
    checks["no duplicate references"] = dupes == 0
    by_payment = charges_by_payment(simulator_records(stack.sim_port))
    settled = set(Payment.objects.filter(status="settled").values_list("pk", flat=True))
    checks["one charge per settled payment"] = set(by_payment) == settled and all(
        n == 1 for n in by_payment.values()
    )
    done = subprocess.run(
        [PY, "manage.py", "reconcile"], cwd=ROOT, env=stack.env,
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    checks["reconcile clean"] = done.returncode == 0
    if done.returncode != 0:  # what broke, for whoever reads the row
        report = OUT / "reconcile-failed.txt"
        report.write_text(f"exit {done.returncode}\n{done.stdout}\n{done.stderr}")
        print(f"reconcile failed: {report}")
    done = subprocess.run(
        [PY, "manage.py", "audit_events"], cwd=ROOT, env=stack.env,
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    checks["events audit clean"] = done.returncode == 0
    if done.returncode != 0:  # every divergence with its trail
        report = OUT / "audit-events-failed.txt"
        report.write_text(f"exit {done.returncode}\n{done.stdout}\n{done.stderr}")
        print(f"audit_events failed: {report}")
    return checks


def report(args, load: LoadResult, figures: dict | None, checks: dict, memory: dict,
           t_start: float, t_final: float | None, extra: dict | None = None,
           per_request: int = 1) -> dict:  # fmt: skip
    row = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "scenario": args.scenario,
        # What differs from `make bench`'s stack, so a row says how it was run.
        "variant": args.variant,
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, "
        f"{platform.python_version()}, loop {args.loop_ms} ms",
        "requests": load.sent,
        "ok": load.ok,
        # Payments (not requests) per second: a batch request carries 1,000.
        "accepted_per_s": round(load.ok * per_request / load.duration, 1)
        if load.duration
        else 0,
        "intake_p50_ms": round(percentile(load.latencies, 50) * 1000, 1),
        "intake_p95_ms": round(percentile(load.latencies, 95) * 1000, 1),
        "intake_p99_ms": round(percentile(load.latencies, 99) * 1000, 1),
        # Server time per request (from send): for batches, the time to accept 1,000.
        "service_p50_ms": round(percentile(load.service, 50) * 1000, 1),
        "service_p99_ms": round(percentile(load.service, 99) * 1000, 1),
        "errors": dict(load.errors),
        "peak_mem_mb": memory,
    }
    if figures:
        span = (figures["last_settled"] - figures["first_accept"]).total_seconds()
        row.update(
            payments=figures["payments"],
            settled=figures["settled"],
            by_status=figures["by_status"],
            settled_per_s=round(figures["settled"] / span, 1) if span else 0,
            last_settled_after_s=round(
                figures["last_settled"].timestamp() - t_start, 1
            ),
            last_settle_minus_last_accept_s=round(
                (figures["last_settled"] - figures["last_accept"]).total_seconds(), 2
            ),
            settle_p50_ms=round(figures["settle_p50"] * 1000),
            settle_p95_ms=round(figures["settle_p95"] * 1000),
            settle_p99_ms=round(figures["settle_p99"] * 1000),
        )
    row["checks"] = checks
    row.update(extra or {})
    path = OUT / f"{_slug(row['scenario'])}-result.json"
    path.write_text(json.dumps(row, indent=2, default=str) + "\n")
    print(summary(row, path))
    _append(row)
    return row


def _slug(scenario: str) -> str:
    """``burst-single (intake only)`` -> ``burst-single-intake-only``."""
    return "-".join("".join(c if c.isalnum() else " " for c in scenario).split())


def summary(row: dict, path: Path | None = None) -> str:
    """A run's figures as a table for a person; ``path`` (the JSON) has them all."""
    variant = f" ({row['variant']})" if row.get("variant") else ""
    payments = row.get("payments", row["ok"])
    lines = [
        ("scenario", f"{row['scenario']}{variant}, {row['when']} UTC"),
        ("machine", row["machine"]),
        ("accepted", f"{payments:,} payments, {row['accepted_per_s']:,}/s"),
    ]
    before, after = row.get("baseline"), row.get("baseline_after")
    if "intake_vs_baseline" in row:
        rates = f"{before['requests_per_s']:,}" + (
            f" before, {after['requests_per_s']:,} after" if after else ""
        )
        lines.append(
            ("bare-INSERT baseline",
             f"{rates} req/s: intake at {row['intake_vs_baseline']:.0%}"
             + _ratio_flags(row))
        )  # fmt: skip
    elif before:
        lines.append(
            ("bare-INSERT baseline",
             f"{before['requests_per_s']:,} req/s, p99 {before['intake_p99_ms']} ms")
        )  # fmt: skip
    lines.append(("intake ms", _percentiles(row, "intake_p{}_ms")))
    if "settled" in row:
        lines.append(
            ("settled",
             f"{row['settled']:,}, {row['settled_per_s']:,}/s; the last "
             f"{row['last_settled_after_s']} s after the start, "
             f"{row['last_settle_minus_last_accept_s']} s after the last accept")
        )  # fmt: skip
        lines.append(("accept->settled ms", _percentiles(row, "settle_p{}_ms")))
    errors = ", ".join(f"{name} {n}" for name, n in row["errors"].items())
    lines.append(("errors", errors or "none"))
    cpu = row.get("cpu_seconds") or {}
    if cpu and payments:
        lines.append(
            ("CPU ms a payment",
             ", ".join(f"{name} {s * 1000 / payments:.3f}"
                       for name, s in cpu.items() if s))
        )  # fmt: skip
    if row.get("rate_limiter_cpu_us") is not None:
        lines.append(
            ("rate limiter", f"{row['rate_limiter_cpu_us']} us of CPU a request")
        )
    memory = ", ".join(f"{name} {mb}" for name, mb in row["peak_mem_mb"].items())
    lines.append(("peak memory MB", memory or "-"))
    checks = row.get("checks") or {}
    if checks:
        failed = [name for name, ok in checks.items() if not ok]
        verdict = "FAILED: " + ", ".join(failed) if failed else "all pass"
        lines.append(("checks", f"{verdict} ({', '.join(checks)})"))
    if path is not None:
        lines.append(("every figure", str(path)))
    width = max(len(name) for name, _ in lines)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in lines)


def _ratio_flags(row: dict) -> str:
    """Why a ratio is not to be trusted, if it is not."""
    flags = ""
    if row.get("baseline_kept_up_with_offered_rate"):
        flags += " (baseline at the offered rate: ratio overstated)"
    if row.get("ratio_unsteady"):
        flags += " (the machine changed speed: ratio unsteady)"
    return flags


def _percentiles(row: dict, key: str) -> str:
    return "  ".join(f"p{p} {row[key.format(p)]}" for p in (50, 95, 99))


def _append(row: dict) -> None:
    header = (
        "| when (UTC) | scenario | machine | payments | accepted/s | baseline req/s "
        "(intake / baseline; steady: its p99) | settled/s | last settled after (s) | last settle - last "
        "accept (s) | intake p50/p95/p99 ms | accept->settled p50/p95/p99 ms | errors "
        "| checks |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    if not RESULTS.exists() or header.splitlines()[0] not in RESULTS.read_text():
        with RESULTS.open("a") as f:
            f.write(
                "\n## Runs with the side-by-side baseline (appended by `make bench`)\n\n"
                + header
            )
    checks = row.get("checks") or {}
    ok = (
        "all pass"
        if checks and all(checks.values())
        else (
            ", ".join(k for k, v in checks.items() if not v) + " FAILED"
            if checks
            else "-"
        )
    )
    settle = (
        f"{row['settle_p50_ms']}/{row['settle_p95_ms']}/{row['settle_p99_ms']}"
        if "settle_p50_ms" in row else "-"
    )  # fmt: skip
    before, after = row.get("baseline"), row.get("baseline_after")
    if "intake_vs_baseline" in row:
        baseline = (
            f"{before['requests_per_s']}"
            + (f" / {after['requests_per_s']} after" if after else "")
            + f" ({row['intake_vs_baseline']:.0%})"
        )
    elif before:  # steady: same rate for both, so compare their tails
        baseline = f"{before['requests_per_s']} (its p99 {before['intake_p99_ms']} ms)"
    else:
        baseline = "-"
    baseline += _ratio_flags(row)
    with RESULTS.open("a") as f:
        f.write(
            f"| {row['when']} | {row['scenario']}"
            f"{' (' + row['variant'] + ')' if row.get('variant') else ''} | {row['machine']} | "
            f"{row.get('payments', row['ok'])} | {row['accepted_per_s']} | {baseline} | "
            f"{row.get('settled_per_s', '-')} | {row.get('last_settled_after_s', '-')} | "
            f"{row.get('last_settle_minus_last_accept_s', '-')} | "
            f"{row['intake_p50_ms']}/{row['intake_p95_ms']}/{row['intake_p99_ms']} | "
            f"{settle} | {row['errors'] or 0} | {ok} |\n"
        )


SCENARIOS = ["burst-batch", "burst-single", "steady", "baseline"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument(
        "--scenario", default="burst-batch", choices=[*SCENARIOS, "all"],
        help="all = burst-batch, burst-single and steady, each on a fresh stack",
    )  # fmt: skip
    p.add_argument("--payments", type=int, default=100_000)
    p.add_argument(
        "--single-payments", type=int, default=20_000,
        help="payments for burst-single within --scenario all",
    )  # fmt: skip
    p.add_argument("--merchants", type=int, default=10)
    p.add_argument(
        "--rate", type=int, default=None,
        help="requests/s offered (single, steady, baseline). Default: 2000 for "
        "burst-single, more than this box takes, so that intake and the "
        "baseline both run at capacity and their ratio means something; 800 "
        "otherwise",
    )  # fmt: skip
    p.add_argument("--steady-rate", type=int, default=None,
                   help="steady's rate within --scenario all (default: 70%% of "
                        "what burst-single sustained in the same run)")  # fmt: skip
    p.add_argument("--duration", type=int, default=180, help="seconds (steady)")
    p.add_argument(
        "--warmup", type=float, default=5,
        help="seconds at the steady rate before the measured part (steady); "
        "their requests are verified like the rest, their latency reported apart",
    )  # fmt: skip
    p.add_argument(
        "--baseline-requests", type=int, default=None,
        help="bare-INSERT requests offered before burst-single/steady on the same "
        "stack (default: as many as the scenario's payments, at most 20,000; 0: none)",
    )  # fmt: skip
    p.add_argument(
        "--trace", action="store_true",
        help="sample each process's CPU and PostgreSQL's waits every 0.1 s into "
        "bench/out/trace-<scenario>.csv (python -m bench.trace lines it up "
        "with the timeline)",
    )  # fmt: skip
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--workers", type=int, default=1, help="Celery worker processes")
    p.add_argument("--concurrency", type=int, default=4, help="pool size per worker")
    p.add_argument("--pool", default="prefork", choices=["prefork", "threads"])
    p.add_argument("--prefetch", type=int, default=1, help="Celery prefetch multiplier")
    p.add_argument("--relays", type=int, default=1)
    p.add_argument(
        "--intake-only", action="store_true",
        help="burst-single/steady without workers, relay or beat: intake's own "
        "cost and the baseline ratio without the pipeline competing for the cores",
    )  # fmt: skip
    p.add_argument(
        "--pipeline-nice", type=int, default=0,
        help="niceness of the Celery workers, the relay and the gateway simulator "
        "(set on each one's session, see _nice_autogroup): intake gets the CPU "
        "first and the pipeline takes the rest. Default 0 (equal): at 10, a "
        "100,000-payment single burst ended with the pipeline 25 s behind",
    )  # fmt: skip
    p.add_argument(
        "--server", default="granian", choices=["granian", "gunicorn"],
        help="the web server (granian is the product's; gunicorn gthread the "
        "one before it)",
    )  # fmt: skip
    p.add_argument("--web-workers", type=int, default=2)
    p.add_argument("--web-threads", type=int, default=8)
    p.add_argument("--task-batch", type=int, default=500)
    p.add_argument("--latency-ms", default="20-50")
    p.add_argument("--settle-timeout", type=float, default=600)
    p.add_argument("--db", default="surge_bench")
    p.add_argument("--redis-db", type=int, default=15)
    return p


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    try:
        lo, hi = (int(x) for x in args.latency_ms.split("-"))
    except ValueError:
        p.error("--latency-ms must look like 20-50")
    rate_given = args.rate is not None
    if not rate_given:
        args.rate = BURST_RATE if args.scenario == "burst-single" else 800
    if args.payments <= 0 or args.rate <= 0 or args.merchants <= 0:
        p.error("--payments, --rate and --merchants must be positive")
    if args.warmup < 0:
        p.error("--warmup must be 0 or more")
    if args.baseline_requests is not None and args.baseline_requests < 0:
        p.error("--baseline-requests must be 0 or more")
    args.variant = stack_variant(args, p, os.environ)
    args.latency_ms = (lo, hi)
    locks = bench_locks(args.db, args.redis_db)  # held until this returns
    if locks is None:
        p.error(
            f"another bench run is using database {args.db} or Redis database "
            f"{args.redis_db}: wait for it to end, or give this one --db and "
            "--redis-db of its own"
        )
    if args.scenario != "all":
        return run_scenario(args)
    status = 0
    capacity = None  # burst-single's accepted/s: what the stack sustains
    for scenario in ("burst-batch", "burst-single", "steady"):
        sub = argparse.Namespace(**vars(args))
        sub.scenario = scenario
        if scenario == "burst-single":
            sub.payments = args.single_payments
            if not rate_given:
                sub.rate = BURST_RATE
        if scenario == "steady":
            if args.steady_rate:
                sub.rate = args.steady_rate
            elif capacity:  # the target's "70% of capacity", measured just now
                sub.rate = max(1, round(0.7 * capacity))
            print(f"steady: {sub.rate}/s (burst-single sustained {capacity}/s)")
        status |= run_scenario(sub)
        if scenario == "burst-single":
            capacity = getattr(sub, "accepted_per_s", None)
    return status


# Options that shape the stack or the load: a run with any of them off its
# default is a variant, and its row says so.
VARIANT_OPTIONS = (
    "connections", "workers", "concurrency", "pool", "prefetch", "relays",
    "pipeline_nice", "server", "web_workers", "web_threads", "task_batch", "latency_ms",
    "merchants",
)  # fmt: skip
# The stack's processes inherit the bench's environment: settings read from
# these reach them too, and change the run as much as an option does.
VARIANT_ENV_PREFIXES = (
    "SURGE_", "GATEWAY_", "CELERY_", "DATABASE_POOL", "CONN_", "MALLOC_",
    "GUNICORN_", "WEB_CONCURRENCY", "PYTHONMALLOC", "PYTHONOPTIMIZE",
    "PYTHONDEVMODE", "PYTHONTRACEMALLOC", "PYTHONASYNCIODEBUG",
)  # fmt: skip


def stack_variant(args, options: argparse.ArgumentParser, environ) -> str:
    """How this run's stack differs from `make bench`'s: options off their
    defaults, no baseline, tracing, and inherited settings (environment)."""
    parts = [
        f"--{name.replace('_', '-')} {getattr(args, name)}"
        for name in VARIANT_OPTIONS
        if getattr(args, name) != options.get_default(name)
    ]
    if args.baseline_requests == 0:
        parts.append("no baseline")
    if args.trace:
        parts.append("traced")
    parts += [
        f"{name}={environ[name]}"
        for name in sorted(environ)
        if name.startswith(VARIANT_ENV_PREFIXES) and name not in STACK_ENV
    ]
    return ", ".join(parts)


# burst-single's default offered rate: above what the box takes (the bare
# baseline has reached 1,370 req/s on machines of this kind), so both it and
# intake run at capacity. At 800 the baseline took all it was offered on a
# fast hour, and the ratio read 85% against a capped baseline.
BURST_RATE = 2000


def bench_locks(db: str, redis_db: int) -> list | None:
    """Exclusive locks on the bench database and Redis database, held until
    the process ends; None if another run holds either. A second run would
    drop the first one's database and flush its broker under it."""
    OUT.mkdir(parents=True, exist_ok=True)
    held = []
    for name in (f"db-{db}", f"redis-{redis_db}"):
        fh = (OUT / f".lock-{name}").open("a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            for other in held:
                other.close()
            return None
        held.append(fh)
    return held


def machine_speed_ms() -> float:
    """Milliseconds this machine takes for a fixed pure-Python loop (best of
    three, on the idle box before the stack starts). Machines of the same kind
    differ from day to day and hour to hour (the bare-INSERT baseline here has
    ranged from 489 to 1,370 req/s): a row's figures are comparable with
    another's only next to this reading."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        total = 0
        for i in range(2_000_000):
            total += i
        best = min(best, time.perf_counter() - start)
    return round(best * 1000, 1)


def rss_growth_per_payment(
    samples: list[tuple[float, dict[str, float]]], rate: float
) -> dict[str, float]:
    """Bytes of RSS each process tree gained per payment over the second half
    of a run at ``rate`` payments/s, from (seconds, {tree: MiB}) samples.

    The first half holds start-up (a worker child's gateway pool starts with
    its first charge, caches fill): growth per payment is read after it. A
    tree that keeps memory per payment grows in every half; one that only
    reaches its high-water mark does not. Nothing below three samples."""
    if len(samples) < 3 or rate <= 0:
        return {}
    t_end, last = samples[-1]
    t_mid, mid = next((t, rss) for t, rss in samples if t >= t_end / 2)
    payments = rate * (t_end - t_mid)
    if payments <= 0:
        return {}
    return {
        name: round((last[name] - mid[name]) * 2**20 / payments, 1)
        for name in last
        if name in mid
    }


def _intake_summary(load: LoadResult) -> dict:
    """Intake p50/p99 and errors of a side run (baseline, warm-up)."""
    return {
        "intake_p50_ms": round(percentile(load.latencies, 50) * 1000, 1),
        "intake_p99_ms": round(percentile(load.latencies, 99) * 1000, 1),
        "errors": dict(load.errors),
    }


def _tracer(args, stack: Stack) -> Tracer | None:
    if not args.trace:
        return None
    tracer = Tracer(
        stack, stack.env["DATABASE_URL"], OUT / f"trace-{args.scenario}.csv"
    )
    tracer.start()
    return tracer


def _cpu_delta(before: dict, after: dict) -> dict:
    return {k: round(v - before.get(k, 0), 1) for k, v in after.items()}


def _baseline_run(args, stack: Stack, n: int) -> dict:
    """The bare-INSERT endpoint at the scenario's offered rate: its rate, CPU
    and latency."""
    before = stack.cpu_seconds()
    base = load_baseline(stack, n, args.rate)
    cpu = _cpu_delta(before, stack.cpu_seconds())
    time.sleep(2)  # let the server's backlog drain
    return {
        "cpu_seconds": cpu,
        "requests_per_s": round(base.ok / base.duration if base.duration else 0, 1),
        **_intake_summary(base),
    }


def _stop_trace(tracer: Tracer | None) -> None:
    if tracer is not None:
        print(f"trace: {tracer.stop()}")


# A spread wider than this between the baseline before and after the scenario
# means the machine changed speed under the run: the ratio is flagged.
BASELINE_SPREAD = 0.15


def _ratio(args, stack: Stack, load: LoadResult, n_base: int, rows: dict) -> None:
    """intake / baseline. For burst-single the baseline runs again after the
    scenario (the pipeline done) and the ratio is read against the mean of
    the two: machines of this kind change speed within minutes, and a
    baseline run in a slow minute made one ratio read 79% against 51-58% in
    the runs around it. Steady offers both the same fixed rate, so a ratio
    says nothing there: its row compares the two p99s instead."""
    if not n_base or not load.duration or args.scenario == "steady":
        return
    before, after = rows["baseline"]["requests_per_s"], None
    if args.scenario == "burst-single":
        rows["baseline_after"] = _baseline_run(args, stack, n_base)
        after = rows["baseline_after"]["requests_per_s"]
    ratio, spread = baseline_ratio(load.ok / load.duration, before, after)
    rows["intake_vs_baseline"] = round(ratio, 3)
    if spread is not None:
        rows["baseline_spread"] = round(spread, 3)
        if spread > BASELINE_SPREAD:
            rows["ratio_unsteady"] = True
            print(
                f"warning: the baseline ran at {before} and {after} req/s before "
                "and after: the machine changed speed, the ratio is unsteady"
            )


def baseline_ratio(
    intake: float, before: float, after: float | None
) -> tuple[float, float | None]:
    """(intake / the baseline's mean rate, the spread of the two baseline runs
    relative to their mean; None with one run)."""
    if after is None:
        return intake / max(before, 0.1), None
    mean = (before + after) / 2
    return intake / max(mean, 0.1), abs(before - after) / max(mean, 0.1)


def run_scenario(args) -> int:
    args.loop_ms = machine_speed_ms()
    stack = Stack(args)
    run_id = uuid.uuid4().hex[:8]
    print(
        f"{args.scenario}: starting the stack "
        f"(web :{stack.web_port}, simulator :{stack.sim_port}) ..."
    )
    stack.up()
    try:
        _django(stack.env)
        if args.scenario == "baseline":
            t_start = time.time()
            load = load_baseline(stack, args.payments, args.rate)
            report(args, load, None, {}, stack.peak_memory_mb(), t_start, None)
            return 0
        merchants = setup_merchants(args.merchants)
        extra_rows: dict = {"postgres_settings": postgres_settings()}
        extra_rows["rate_limiter_cpu_us"] = rate_limiter_cpu_us(merchants[0][0])
        n_base = 0  # bare-INSERT requests beside the scenario
        if args.scenario == "burst-batch":
            cpu_before = stack.cpu_seconds()
            tracer = _tracer(args, stack)
            t_start = time.time()
            load = load_batch(stack, merchants, args.payments, run_id)
            expected = load.ok * 1000
        else:
            total = args.payments if args.scenario == "burst-single" else (
                args.rate * args.duration
            )  # fmt: skip
            # The bare-INSERT baseline, side by side: same stack, same offered
            # rate, just before (and for burst-single again just after, see
            # _ratio); intake efficiency is the ratio of the two.
            n_base = (
                min(total, 20_000)
                if args.baseline_requests is None
                else args.baseline_requests
            )
            if n_base:
                base = extra_rows["baseline"] = _baseline_run(args, stack, n_base)
                if (
                    args.scenario == "burst-single"
                    and base["requests_per_s"] >= 0.97 * args.rate
                ):
                    # Its capacity is higher: intake / baseline overstates intake.
                    print(
                        f"warning: the baseline kept up with the offered "
                        f"{args.rate}/s; offer more (--rate) for a ratio"
                    )
                    extra_rows["baseline_kept_up_with_offered_rate"] = True
            cpu_before = stack.cpu_seconds()
            t_start = time.time()
            samples: list[tuple[float, dict]] = []
            sampling = threading.Event()

            def sample() -> None:  # RSS every 30 s: is memory flat?
                while not sampling.wait(30):
                    samples.append((round(time.time() - t_start), stack.rss_mb()))

            # Steady state, not a start: the first seconds run at the same
            # rate on the same connections and are counted apart ("warmup").
            # They are real payments, settled and verified with the rest.
            n_warm = int(args.rate * args.warmup) if args.scenario == "steady" else 0
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            tracer = _tracer(args, stack)
            load = load_single(stack, merchants, total, args.rate, run_id, n_warm)
            sampling.set()
            warm = load.warmup
            expected = load.ok + (warm.ok if warm else 0)
            if warm is not None:
                extra_rows["warmup"] = {
                    "seconds": args.warmup,
                    "requests": warm.sent,
                    "ok": warm.ok,
                    **_intake_summary(warm),
                }
            if samples:
                extra_rows["rss_mb_over_time"] = samples
                growth = rss_growth_per_payment(samples, args.rate)
                if growth:
                    extra_rows["rss_growth_bytes_per_payment"] = growth
                    print(
                        f"RSS growth over the run's second half, bytes per payment: {growth}"
                    )
        print(
            f"load done: {load.ok} ok of {load.sent} in {load.duration:.1f}s; settling..."
        )
        print(f"latency per request: {save_timeline(args.scenario, load)}")
        if args.intake_only:
            _stop_trace(tracer)
            cpu = _cpu_delta(cpu_before, stack.cpu_seconds())
            _ratio(args, stack, load, n_base, extra_rows)
            args.scenario += " (intake only)"
            report(
                args, load, None, {}, stack.peak_memory_mb(), t_start, None,
                extra={"cpu_seconds": cpu, **extra_rows},
            )  # fmt: skip
            return 0
        t_final = wait_final(expected, args.settle_timeout)
        _stop_trace(tracer)
        cpu = _cpu_delta(cpu_before, stack.cpu_seconds())
        _ratio(args, stack, load, n_base, extra_rows)
        figures = db_figures()
        checks = verify(stack, expected)
        # A refused request is a payment the burst lost: a run with one fails.
        checks["every request accepted"] = not load.errors and (
            load.warmup is None or not load.warmup.errors
        )
        args.accepted_per_s = report(
            args, load, figures, checks, stack.peak_memory_mb(), t_start, t_final,
            per_request=1000 if args.scenario == "burst-batch" else 1,
            extra={"cpu_seconds": cpu, **extra_rows},
        )["accepted_per_s"]  # fmt: skip
        return 0 if all(checks.values()) else 1
    finally:
        from django.db import connections

        connections.close_all()  # the next scenario drops this database
        stack.down()


if __name__ == "__main__":
    sys.exit(main())
