"""PostgreSQL's CPU time by the application each backend served.

Backends come and go during a run: Django closes a connection at the end of a
request or task once it is older than CONN_MAX_AGE (60 s), so the web's and
the workers' backends are replaced every minute. Reading pg_stat_activity only
before and after the load missed every backend that ended in between (the
bench reported 9 CPU s for the web's backends out of PostgreSQL's 134 in a
100,000-payment run, and a negative figure in another). This polls a few
times a second from a thread: each backend's CPU (from /proc) is kept until
it is gone, then added to its application's total. A backend's last moments
after the last poll are missed (at most one interval of its time).
"""

import os
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psycopg

_TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int, *, children: bool = False) -> float | None:
    """User + system CPU seconds of a live process (with ``children``, those
    of its children it has reaped too), None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return sum(int(x) for x in fields[11 : 15 if children else 13]) / _TICK


@dataclass
class _Backend:
    app: str
    started: object  # backend_start: tells a new backend from a reused pid
    base: float  # CPU already spent when first seen by a primed poller
    last: float


class BackendCPU:
    """Cumulative CPU seconds of one database's backends, by application_name.

    ``totals()`` is monotonic, so the CPU of a window is the difference of two
    readings. Backends alive at the first poll count from that moment; those
    that start later count whole.
    """

    def __init__(self, dsn: str, interval: float = 0.25):
        self.dsn = dsn
        self.interval = interval
        self._conn: psycopg.Connection | None = None
        self._live: dict[int, _Backend] = {}
        self._done: Counter = Counter()
        self._primed = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> None:
        with self._lock:
            if self._conn is None:
                self._conn = psycopg.connect(
                    self.dsn, autocommit=True, application_name="bench-cpu"
                )
            rows = self._conn.execute(
                "SELECT pid, application_name, backend_start FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchall()
            seen = set()
            for pid, app, started in rows:
                cpu = proc_cpu(pid)
                if cpu is None:
                    continue
                seen.add(pid)
                backend = self._live.get(pid)
                if backend is not None and backend.started != started:
                    self._retire(pid)  # the pid was reused by a new backend
                    backend = None
                if backend is None:
                    base = cpu if not self._primed else 0.0
                    backend = self._live[pid] = _Backend(app or "?", started, base, cpu)
                backend.last = cpu
            for pid in [p for p in self._live if p not in seen]:
                self._retire(pid)
            self._primed = True

    def _retire(self, pid: int) -> None:
        backend = self._live.pop(pid)
        self._done[backend.app] += backend.last - backend.base

    def totals(self) -> dict[str, float]:
        """CPU seconds so far per application, backends gone included."""
        self.poll()
        with self._lock:
            out = Counter(self._done)
            for backend in self._live.values():
                out[backend.app] += backend.last - backend.base
            return dict(out)

    def start(self) -> None:
        self.poll()

        def run() -> None:
            while not self._stop.wait(self.interval):
                try:
                    self.poll()
                except psycopg.Error:
                    return  # the database is going away with the stack

        self._thread = threading.Thread(target=run, name="bench-cpu", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
