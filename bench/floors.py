"""The floor of each layer on this box: what the parts cost with nothing of
Surge's in them, so Surge's own figures can be read against the physical limit.

    python -m bench.floors                    # every measurement, ~3 minutes
    python -m bench.floors --only wsgi,insert --seconds 10

- **wsgi**: a hello-world WSGI application (``bench.hello``) under gunicorn
  sync, gunicorn gthread and granian (a Rust HTTP server with a WSGI interface),
  two processes each, driven by the bench's own load generator;
- **django**: the bench's bare-INSERT endpoint (Django + DRF + one INSERT, the
  baseline ``make bench`` reads intake against) under gunicorn gthread and
  granian;
- **insert**: a bare psycopg INSERT loop (autocommit, synchronous commit on),
  1, 2, 4 and 8 connections, and 8 again with group commit
  (``commit_delay``/``commit_siblings`` set on the session, durability kept);
- **simulator**: the gateway simulator alone, charged with no added latency.

Each measurement offers more than the server takes (open loop) for
``--seconds`` and reports what it sustained and the CPU a request of the
server, of its PostgreSQL backends and of the load generator, all sharing the
two cores as they do in ``make bench``. A markdown table goes to stdout and
every figure to ``bench/out/floors.json``.
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg

from bench.loadgen import percentile, run_open_loop
from bench.pgcpu import BackendCPU, proc_cpu

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
BIN = Path(PY).parent
OUT = ROOT / "bench" / "out"
DB = "surge_floors"
DSN = f"postgres://postgres@127.0.0.1:5432/{DB}"
INSERT_DDL = (
    "CREATE TABLE IF NOT EXISTS floor_insert "
    "(id bigserial PRIMARY KEY, body jsonb NOT NULL, "
    "created_at timestamptz DEFAULT now())"
)
BODY = {"amount": 1000, "currency": "usd", "source": "tok_floor"}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


def tree_cpu(root: int) -> float:
    """CPU seconds of a process and all its descendants (reaped ones included)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            ppid = int(text[text.rindex(")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += proc_cpu(pid, children=True) or 0.0
        todo.extend(children.get(pid, []))
    return total


# What each server runs: (name, argv with {app} and {port}).
SERVERS = {
    "gunicorn sync": [
        str(BIN / "gunicorn"), "{app}", "-b", "127.0.0.1:{port}", "-k", "sync",
        "-w", "2", "--backlog", "4096", "--log-level", "warning",
    ],
    "gunicorn gthread": [
        str(BIN / "gunicorn"), "{app}", "-b", "127.0.0.1:{port}", "-k", "gthread",
        "-w", "2", "--threads", "8", "--backlog", "4096", "--log-level", "warning",
    ],
    "granian": [
        str(BIN / "granian"), "--interface", "wsgi", "--host", "127.0.0.1",
        "--port", "{port}", "--workers", "2", "--blocking-threads", "8",
        "--backlog", "4096", "--log-level", "warning", "--no-ws", "{app}",
    ],
}  # fmt: skip


def _client(args: tuple) -> dict:
    """One load-generator process: its share of the requests, its own CPU."""
    port, total, rate, connections, kind = args
    run = uuid.uuid4().hex[:8]

    def make(i: int):
        if kind == "simulator":
            body = json.dumps({
                "payment_id": f"p{run}{i}", "amount": 1000, "currency": "usd",
                "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2099},
            }).encode()  # fmt: skip
            headers = {
                "Content-Type": "application/json",
                "Idempotency-Key": f"{run}{i}",
            }
            return "POST", "/v1/charges", headers, body
        path = "/bench/baseline" if kind == "django" else "/"
        body = json.dumps({**BODY, "amount": 1000 + i}).encode()
        return "POST", path, {"Content-Type": "application/json"}, body

    before = resource.getrusage(resource.RUSAGE_SELF)
    result = asyncio.run(
        run_open_loop(
            host="127.0.0.1", port=port, total=total, rate=rate,
            make_request=make, connections=connections,
        )
    )  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "ok": result.ok,
        "errors": dict(result.errors),
        "started": result.started,
        "finished": result.finished,
        "service": result.service,
        "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
    }


def drive(port: int, kind: str, rate: int, seconds: float, clients: int) -> dict:
    """Offer ``rate``/s for ``seconds`` from ``clients`` processes; what came back."""
    share = int(rate * seconds / clients)
    jobs = [(port, share, rate / clients, 64 // clients, kind)] * clients
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        parts = pool.map(_client, jobs)
    ok = sum(p["ok"] for p in parts)
    span = max(p["finished"] for p in parts) - min(p["started"] for p in parts)
    service = [s for p in parts for s in p["service"]]
    errors: dict[str, int] = {}
    for p in parts:
        for k, v in p["errors"].items():
            errors[k] = errors.get(k, 0) + v
    return {
        "ok": ok,
        "per_s": ok / span if span else 0.0,
        "loadgen_cpu": sum(p["cpu"] for p in parts),
        "service_p50_ms": percentile(service, 50) * 1000,
        "errors": errors,
    }


class Server:
    def __init__(self, name: str, app: str, env: dict):
        self.port = _free_port()
        argv = [a.format(app=app, port=self.port) for a in SERVERS[name]]
        OUT.mkdir(parents=True, exist_ok=True)
        log = (OUT / f"floors-{name.replace(' ', '-')}.log").open("w")
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        _wait_port(self.port)
        time.sleep(1)  # every worker process up

    def cpu(self) -> float:
        return tree_cpu(self.proc.pid)

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


def measure_server(
    name: str, kind: str, args, env: dict, pg: BackendCPU | None
) -> dict:
    app = "bench.hello:application" if kind == "wsgi" else "config.wsgi:application"
    server = Server(name, app, env)
    try:
        drive(server.port, kind, args.rate // 4, 1, args.clients)  # warm-up
        cpu0 = server.cpu()
        pg0 = sum(pg.totals().values()) if pg else 0.0
        got = drive(server.port, kind, args.rate, args.seconds, args.clients)
        cpu = server.cpu() - cpu0
        pg_cpu = (sum(pg.totals().values()) - pg0) if pg else 0.0
    finally:
        server.stop()
    n = max(got["ok"], 1)
    return {
        "layer": kind, "what": name, "per_s": round(got["per_s"], 1), "ok": got["ok"],
        "server_ms": round(cpu / n * 1000, 3),
        "postgres_ms": round(pg_cpu / n * 1000, 3) if pg else None,
        "loadgen_ms": round(got["loadgen_cpu"] / n * 1000, 3),
        "service_p50_ms": round(got["service_p50_ms"], 1),
        "errors": got["errors"],
    }  # fmt: skip


def _insert_loop(args: tuple) -> tuple[int, float]:
    seconds, options = args
    body = json.dumps(BODY)
    n = 0
    with psycopg.connect(
        DSN, autocommit=True, application_name="floor-insert", options=options
    ) as conn:
        before = resource.getrusage(resource.RUSAGE_SELF)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            conn.execute("INSERT INTO floor_insert (body) VALUES (%s)", (body,))
            n += 1
        after = resource.getrusage(resource.RUSAGE_SELF)
    return n, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure_insert(
    connections: int, seconds: float, pg: BackendCPU, options=""
) -> dict:
    pg0 = sum(pg.totals().values())
    started = time.monotonic()
    with multiprocessing.get_context("fork").Pool(connections) as pool:
        parts = pool.map(_insert_loop, [(seconds, options)] * connections)
    span = time.monotonic() - started
    time.sleep(0.5)  # the poller sees the backends' last moments
    pg_cpu = sum(pg.totals().values()) - pg0
    n = sum(p[0] for p in parts)
    what = f"{connections} connection{'s' if connections > 1 else ''}"
    if options:
        what += " (group commit: " + options.replace("-c ", "") + ")"
    return {
        "layer": "insert", "what": what, "per_s": round(n / span, 1), "ok": n,
        "server_ms": None, "postgres_ms": round(pg_cpu / n * 1000, 3),
        "loadgen_ms": round(sum(p[1] for p in parts) / n * 1000, 3),
        "service_p50_ms": None, "errors": {},
    }  # fmt: skip


def measure_simulator(args, env: dict) -> dict:
    port = _free_port()
    log = (OUT / "floors-simulator.log").open("w")
    proc = subprocess.Popen(
        [PY, "manage.py", "run_gateway_simulator", "--port", str(port),
         "--latency-ms", "0-0"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        _wait_port(port)
        drive(port, "simulator", args.rate // 4, 1, args.clients)
        cpu0 = tree_cpu(proc.pid)
        got = drive(port, "simulator", args.rate, args.seconds, args.clients)
        cpu = tree_cpu(proc.pid) - cpu0
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    n = max(got["ok"], 1)
    return {
        "layer": "simulator", "what": "charges, no added latency",
        "per_s": round(got["per_s"], 1), "ok": got["ok"],
        "server_ms": round(cpu / n * 1000, 3), "postgres_ms": None,
        "loadgen_ms": round(got["loadgen_cpu"] / n * 1000, 3),
        "service_p50_ms": round(got["service_p50_ms"], 1), "errors": got["errors"],
    }  # fmt: skip


def _database(env: dict) -> None:
    admin = "postgres://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(INSERT_DDL)
    # The baseline endpoint's table (the product's tables are not needed by it).
    subprocess.run(
        [PY, "-c", "import django; django.setup(); from django.db import connection;"
         "from bench.baseline import DDL; connection.cursor().execute(DDL)"],
        cwd=ROOT, env=env, check=True,
    )  # fmt: skip


def table(rows: list[dict]) -> str:
    lines = [
        "| layer | what | sustained /s | server CPU ms | its PostgreSQL ms "
        "| load generator ms | service p50 ms | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    dash = "-"
    for r in rows:
        lines.append(
            f"| {r['layer']} | {r['what']} | {r['per_s']:,.1f} "
            f"| {dash if r['server_ms'] is None else r['server_ms']} "
            f"| {dash if r['postgres_ms'] is None else r['postgres_ms']} "
            f"| {r['loadgen_ms']} "
            f"| {dash if r['service_p50_ms'] is None else r['service_p50_ms']} "
            f"| {sum(r['errors'].values()) or 'none'} |"
        )
    return "\n".join(lines)


LAYERS = ("wsgi", "django", "insert", "simulator")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.floors", description=__doc__)
    p.add_argument("--only", default=",".join(LAYERS), help="comma-separated layers")
    p.add_argument("--seconds", type=float, default=8, help="measured seconds each")
    p.add_argument(
        "--rate", type=int, default=12_000,
        help="requests/s offered (more than any server here takes)",
    )  # fmt: skip
    p.add_argument("--clients", type=int, default=2, help="load-generator processes")
    p.add_argument(
        "--servers", default=",".join(SERVERS),
        help="comma-separated: " + ", ".join(SERVERS),
    )  # fmt: skip
    args = p.parse_args(argv)
    layers = [x for x in args.only.split(",") if x]
    unknown = set(layers) - set(LAYERS)
    if unknown:
        p.error(f"unknown layers {sorted(unknown)}; choose from {', '.join(LAYERS)}")
    servers = [s for s in args.servers.split(",") if s]
    if set(servers) - set(SERVERS):
        p.error(f"unknown servers; choose from {', '.join(SERVERS)}")

    from bench.__main__ import machine_speed_ms  # deferred: the CLI's own module

    loop = machine_speed_ms()
    env = {
        **os.environ,
        "DATABASE_URL": DSN,
        "REDIS_URL": "redis://127.0.0.1:6379/14",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/14",
        "SURGE_ENV": "bench",
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "LOG_LEVEL": "WARNING",
    }
    _database(env)
    pg = BackendCPU(DSN)
    pg.start()
    rows: list[dict] = []
    try:
        for layer in layers:
            if layer == "wsgi":
                for name in servers:
                    rows.append(measure_server(name, "wsgi", args, env, None))
                    print(table(rows[-1:]).splitlines()[-1], flush=True)
            elif layer == "django":
                for name in (s for s in servers if s != "gunicorn sync"):
                    rows.append(measure_server(name, "django", args, env, pg))
                    print(table(rows[-1:]).splitlines()[-1], flush=True)
            elif layer == "insert":
                for c in (1, 2, 4, 8):
                    rows.append(measure_insert(c, args.seconds, pg))
                    print(table(rows[-1:]).splitlines()[-1], flush=True)
                rows.append(
                    measure_insert(
                        8, args.seconds, pg, "-c commit_delay=1000 -c commit_siblings=2"
                    )
                )
                print(table(rows[-1:]).splitlines()[-1], flush=True)
            else:
                rows.append(measure_simulator(args, env))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
    finally:
        pg.stop()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"\nFloors, {when}, {os.cpu_count()} cores, loop {loop} ms\n")
    print(table(rows))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "floors.json").write_text(
        json.dumps({"when": when, "loop_ms": loop, "rows": rows}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
