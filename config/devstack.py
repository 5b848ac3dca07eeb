"""``make run``: the production servers on one machine, database included.

With no DATABASE_URL it starts the embedded PostgreSQL (config/embedded_db.py),
then migrates, collects static files, prints the demo merchant's key and runs
the Procfile under honcho: gunicorn, Celery prefork workers, the relay and beat.
Ctrl-C stops honcho's processes first, then PostgreSQL, so nothing loses its
database mid-shutdown and nothing outlives ``make run``.
"""

import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from config import embedded_db

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Sizes:
    """Process counts from the machine's cores, as the benchmark runs them."""

    web_workers: int
    web_threads: int
    worker_concurrency: int

    @classmethod
    def for_cpus(cls, cpus: int) -> "Sizes":
        # Tasks spend most of their time waiting on the gateway and the
        # database, so a worker child per core leaves cores idle.
        return cls(web_workers=cpus, web_threads=8, worker_concurrency=2 * cpus)

    @property
    def connections(self) -> int:
        """PostgreSQL connections: one per web thread and worker child (kept
        open, CONN_MAX_AGE), plus room for the relay, beat and manage.py."""
        return max(
            100, self.web_workers * self.web_threads + self.worker_concurrency + 40
        )


def cpu_count() -> int:
    """The cores this process may run on (a container's share, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class Stop(Exception):
    """A signal asked make run to stop."""


def _raise_stop(signum, frame):
    raise Stop(signal.Signals(signum).name)


def main() -> int:
    port = os.environ.get("SURGE_PORT", "8000")
    sizes = Sizes.for_cpus(cpu_count())
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        # The Procfile names programs, not paths: those of this interpreter's venv.
        "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
        "SURGE_PORT": port,
        "SURGE_WEB_WORKERS": str(sizes.web_workers),
        "SURGE_WEB_THREADS": str(sizes.web_threads),
        "SURGE_WORKER_CONCURRENCY": str(sizes.worker_concurrency),
    }
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_stop)
    server = None
    try:
        if not os.environ.get("DATABASE_URL"):
            server = embedded_db.EmbeddedPostgres(
                embedded_db.var_dir(), max_connections=sizes.connections
            )
            server.start()
        _forget_dead_processes_metrics()
        manage = [sys.executable, "manage.py"]
        subprocess.run([*manage, "migrate", "--noinput"], env=env, check=True)
        subprocess.run(
            [*manage, "collectstatic", "--noinput", "-v", "0"], env=env, check=True
        )
        subprocess.run([*manage, "bootstrap_demo", "--port", port], env=env, check=True)
        return _run_procfile(env)
    except (KeyboardInterrupt, Stop):
        return 130
    except subprocess.CalledProcessError as exc:
        return exc.returncode or 1
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C: stop anyway
        if server is not None:
            print("Stopping the embedded PostgreSQL", flush=True)
            server.stop()


def _run_procfile(env: dict[str, str]) -> int:
    """Run honcho until it ends. Ctrl-C reaches it with the terminal's process
    group; any other stop is passed on, and honcho stops the rest."""
    honcho = subprocess.Popen(
        [str(Path(sys.executable).with_name("honcho")), "start", "-f", "Procfile"],
        env=env,
    )
    while True:
        try:
            return honcho.wait()
        except (KeyboardInterrupt, Stop):
            if honcho.poll() is None:
                honcho.send_signal(signal.SIGTERM)


def _forget_dead_processes_metrics() -> None:
    """prometheus_client's multiprocess folder must start empty on each run,
    or the last run's counters are summed into this one's."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        return
    folder = embedded_db.var_dir() / "prometheus"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
