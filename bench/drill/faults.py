"""The drill's faults: each a named scenario, run at a moment drawn from the seed.

A process fault SIGKILLs the process's whole group and restarts it after a
pause, as a supervisor (systemd, Kubernetes) would. A server fault restarts
the drill's own PostgreSQL, Redis or broker. A gateway fault changes the
primary simulator's behaviour for a window through its ``/_control``
endpoint (the secondary stays healthy). The client faults are carried out by
the load itself (bench/drill/load.py) during their window.
"""

import json
import random
import signal
import threading
import time
import traceback
import urllib.request
from dataclasses import dataclass, field

from bench.drill.stack import DrillStack
from bench.processes import port_open

# name -> what it does, for the help text and the report.
FAULTS: dict[str, str] = {
    "kill-web": "SIGKILL a web server (gunicorn and its workers), restart it",
    "kill-worker": "SIGKILL a Celery worker (and its pool), restart it",
    "kill-relay": "SIGKILL a relay, restart it",
    "kill-beat": "SIGKILL a beat, restart it",
    "redis-restart-empty": "Redis killed and restarted with no data",
    "postgres-restart": "PostgreSQL fast shutdown (connections drop), restart",
    "broker-restart": "the broker stopped and started (its data kept)",
    "gateway-slow": "the primary gateway answers in 0.5-2 s",
    "gateway-errors": "the primary gateway fails 30% of calls (503, not processed)",
    "gateway-timeouts": "the primary gateway holds 30% of charges past the "
    "client's timeout after recording them",
    "gateway-down": "the primary gateway refuses connections",
    "client-timeouts": "clients give up after 50 ms and retry with the same key",
    "duplicates": "clients send each request twice at once",
}

CLIENT_FAULTS = ("client-timeouts", "duplicates")


@dataclass
class FaultRun:
    name: str
    at: float  # seconds after the load began, as planned
    pause: float  # down time (processes, servers) or window (gateway, clients)
    started: float | None = None  # Unix times
    ended: float | None = None
    detail: str = ""
    error: str = ""


@dataclass
class Schedule:
    runs: list[FaultRun]
    active: set[str] = field(default_factory=set)  # client faults in effect now

    @property
    def last_end(self) -> float | None:
        ends = [r.ended for r in self.runs if r.ended is not None]
        return max(ends) if ends else None


def plan(names: list[str], seed: int, window: float) -> Schedule:
    """When each fault happens within the first ``window`` seconds of the load,
    and how long it lasts, all drawn from ``seed``."""
    rng = random.Random(seed)
    runs = []
    for name in names:
        at = rng.uniform(1.0, max(1.5, window))
        if name.startswith("gateway-") or name in CLIENT_FAULTS:
            pause = rng.uniform(4.0, 8.0)
        else:
            pause = rng.uniform(1.0, 4.0)
        runs.append(FaultRun(name, round(at, 1), round(pause, 1)))
    runs.sort(key=lambda r: r.at)
    return Schedule(runs)


def _control(port: int, body: dict, timeout: float = 30) -> dict:
    """Change the simulator's knobs; while it refuses connections (the
    gateway-down fault overlapping this one), try again until it listens."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/_control",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (http only)
                return json.loads(resp.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


NORMAL = {
    "latency_ms": [20, 50],
    "error_rate": 0.0,
    "timeout_rate": 0.0,
    "outage": False,
}


class Injector:
    """Runs a schedule, each fault in a thread of its own at its moment."""

    def __init__(self, stack: DrillStack, schedule: Schedule, seed: int):
        self.stack = stack
        self.schedule = schedule
        self.rng = random.Random(seed + 1)
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()  # one server restart at a time

    def start(self, t0: float) -> None:
        for run in self.schedule.runs:
            thread = threading.Thread(
                target=self._run, args=(run, t0), daemon=True, name=run.name
            )
            thread.start()
            self.threads.append(thread)

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.1, deadline - time.monotonic()))

    def _run(self, run: FaultRun, t0: float) -> None:
        time.sleep(max(0.0, t0 + run.at - time.time()))
        run.started = time.time()
        try:
            getattr(self, "_" + run.name.replace("-", "_"))(run)
        except Exception as exc:  # reported in the table: the drill fails
            run.error = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        run.ended = time.time()
        print(
            f"fault {run.name}: {run.detail or 'done'} "
            f"({run.ended - run.started:.1f} s){' ERROR ' + run.error if run.error else ''}",
            flush=True,
        )

    # --- processes ------------------------------------------------------------
    def _kill_and_restart(self, run: FaultRun, prefix: str) -> None:
        names = [n for n in self.stack.surge_processes() if n.startswith(prefix)]
        name = self.rng.choice(names)
        self.stack.procs.kill(name, signal.SIGKILL)
        time.sleep(run.pause)
        self.stack.start(name)
        run.detail = f"{name} killed, restarted after {run.pause} s"

    def _kill_web(self, run: FaultRun) -> None:
        self._kill_and_restart(run, "web")

    def _kill_worker(self, run: FaultRun) -> None:
        self._kill_and_restart(run, "worker")

    def _kill_relay(self, run: FaultRun) -> None:
        self._kill_and_restart(run, "relay")

    def _kill_beat(self, run: FaultRun) -> None:
        self._kill_and_restart(run, "beat")

    # --- servers ----------------------------------------------------------------
    def _redis_restart_empty(self, run: FaultRun) -> None:
        with self.lock:
            self.stack.restart_redis(run.pause, keep_data=False)
        run.detail = f"Redis killed, restarted empty after {run.pause} s"

    def _postgres_restart(self, run: FaultRun) -> None:
        with self.lock:
            self.stack.restart_postgres(run.pause)
        run.detail = f"PostgreSQL fast shutdown, restarted after {run.pause} s"

    def _broker_restart(self, run: FaultRun) -> None:
        with self.lock:
            self.stack.restart_broker(run.pause)
        run.detail = f"{self.stack.broker} stopped, restarted after {run.pause} s"

    # --- the primary gateway ------------------------------------------------------
    def _gateway(self, run: FaultRun, change: dict, what: str) -> None:
        port = self.stack.gateway_ports["primary"]
        _control(port, change)
        time.sleep(run.pause)
        if change.get("outage") != "refuse":  # a refusal ends by itself
            _control(port, {k: NORMAL[k] for k in change})
        run.detail = f"primary gateway {what} for {run.pause} s"

    def _gateway_slow(self, run: FaultRun) -> None:
        self._gateway(run, {"latency_ms": [500, 2000]}, "slow (0.5-2 s)")

    def _gateway_errors(self, run: FaultRun) -> None:
        self._gateway(run, {"error_rate": 0.3}, "failing 30%")

    def _gateway_timeouts(self, run: FaultRun) -> None:
        self._gateway(run, {"timeout_rate": 0.3}, "timing out 30% after recording")

    def _gateway_down(self, run: FaultRun) -> None:
        port = self.stack.gateway_ports["primary"]
        _control(port, {"outage": "refuse", "outage_seconds": run.pause})
        time.sleep(run.pause + 0.5)
        deadline = time.monotonic() + 30
        while not port_open(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        run.detail = f"primary gateway refusing connections for {run.pause} s"

    # --- clients ------------------------------------------------------------------
    def _client(self, run: FaultRun, what: str) -> None:
        self.schedule.active.add(run.name)
        time.sleep(run.pause)
        self.schedule.active.discard(run.name)
        run.detail = f"{what} for {run.pause} s"

    def _client_timeouts(self, run: FaultRun) -> None:
        self._client(run, "clients timing out after 50 ms and retrying")

    def _duplicates(self, run: FaultRun) -> None:
        self._client(run, "every request sent twice at once")
