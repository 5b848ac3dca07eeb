"""Real processes for pipeline tests: Celery worker, relay, beat, gateway simulator.

Each process runs this checkout's code against the test database of the
current xdist worker and its own Redis database, and is killed at teardown.
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import connection

from bench.processes import free_port, port_open

__all__ = ["CELERY", "PYTHON", "ROOT", "Stack", "free_port", "wait_until"]

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CELERY = str(Path(PYTHON).with_name("celery"))


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.2):
    """Poll until ``predicate()`` is truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {value!r})")


class Stack:
    def __init__(self, tmp_path: Path, **env_overrides: str):
        db = connection.settings_dict
        self.env = {
            **os.environ,
            "DATABASE_URL": (
                f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:"
                f"{db['PORT'] or 5432}/{db['NAME']}"
            ),
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "REDIS_URL": settings.REDIS_URL,
            "SURGE_ENV": "test",
            "CONN_MAX_AGE": "0",
            "LOG_LEVEL": "INFO",
            **env_overrides,
        }
        self.tmp = tmp_path
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}

    def start(self, name: str, argv: list[str], **extra_env: str) -> subprocess.Popen:
        log = self.tmp / f"{name}.log"
        self.logs[name] = log
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**self.env, **extra_env},
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def worker(self, name: str = "worker", concurrency: int = 8) -> subprocess.Popen:
        return self.start(
            name,
            [
                CELERY, "-A", "config", "worker",
                "-Q", "default,validate,execute,settle",
                "-P", "threads", "-c", str(concurrency),
                "-n", f"{name}-{os.getpid()}@%h",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
                "--loglevel", "INFO",
            ],
        )  # fmt: skip

    def relay(self) -> subprocess.Popen:
        return self.start(
            "relay", [PYTHON, "manage.py", "run_relay", "--poll-seconds", "0.5"]
        )

    def beat(self) -> subprocess.Popen:
        return self.start(
            "beat",
            [
                CELERY, "-A", "config", "beat", "--loglevel", "INFO",
                "--schedule", str(self.tmp / "beat-schedule"),
            ],
        )  # fmt: skip

    def simulator(self, name: str, port: int, *args: str) -> subprocess.Popen:
        proc = self.start(
            name,
            [PYTHON, "manage.py", "run_gateway_simulator", "--port", str(port), *args],
        )
        wait_until(lambda: port_open(port), timeout=15)
        return proc

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(name)
        os.killpg(proc.pid, sig)
        proc.wait(timeout=15)

    def stop_all(self) -> None:
        for name in list(self.procs):
            proc = self.procs[name]
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for name in list(self.procs):
            proc = self.procs.pop(name)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def log_text(self) -> str:
        return "\n".join(
            f"--- {name} ---\n{path.read_text(errors='replace')[-4000:]}"
            for name, path in self.logs.items()
        )
