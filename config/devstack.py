"""``make run``: the production servers on one machine, database included.

With no DATABASE_URL it starts the embedded PostgreSQL (config/embedded_db.py),
then migrates, collects static files, prints the demo merchant's key and runs
the Procfile: granian, Celery prefork workers, the relay and beat. Ctrl-C
stops those first, then PostgreSQL, so nothing loses its database
mid-shutdown and nothing outlives ``make run``.
"""

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
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
        "PYTHONUNBUFFERED": "1",  # log lines as they happen, through the pipe
        "SURGE_WEB_WORKERS": str(sizes.web_workers),
        "SURGE_WEB_THREADS": str(sizes.web_threads),
        "SURGE_WORKER_CONCURRENCY": str(sizes.worker_concurrency),
    }
    var = embedded_db.var_dir()
    var.mkdir(parents=True, exist_ok=True)
    lock = (var / "make-run.lock").open("w")
    try:  # held until this process ends, however it ends
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"make run is already running on {var}; stop it first.", flush=True)
        return 1
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_stop)
    server = None
    try:
        if not os.environ.get("DATABASE_URL"):
            server = embedded_db.EmbeddedPostgres(
                var, max_connections=sizes.connections
            )
            server.start()
        _forget_dead_processes_metrics()
        manage = [sys.executable, "manage.py"]
        subprocess.run([*manage, "migrate", "--noinput"], env=env, check=True)
        subprocess.run(
            [*manage, "collectstatic", "--noinput", "-v", "0"], env=env, check=True
        )
        subprocess.run([*manage, "bootstrap_demo", "--port", port], env=env, check=True)
        procfile = Procfile(ROOT / "Procfile")
        try:
            procfile.start(env)
            return procfile.wait_any()
        except (KeyboardInterrupt, Stop):
            print("Stopping (Ctrl-C again to kill at once)", flush=True)
            return 130
        finally:
            procfile.stop()
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


class Procfile:
    """The Procfile's processes, each in its own session, output prefixed.

    Not honcho: it stops each process group with SIGTERM and SIGKILLs it 5 s
    later. Celery's prefork children killed under their parent's warm shutdown
    can leave the parent waiting for good (seen here), and a warm shutdown
    takes about that long. So SIGTERM goes to each program (granian's main process,
    Celery's main process), which stops its own children; whatever is left
    after ``grace`` seconds is killed, group by group.
    """

    def __init__(self, path: Path):
        self.commands = {}
        for line in path.read_text().splitlines():
            name, sep, command = line.partition(":")
            if sep and name.strip() and not name.startswith("#"):
                self.commands[name.strip()] = command.strip()
        self.procs: dict[str, subprocess.Popen] = {}
        self._out = threading.Lock()

    def start(self, env: dict[str, str]) -> None:
        width = max(map(len, self.commands))
        for name, command in self.commands.items():
            proc = subprocess.Popen(  # noqa: S602 (a Procfile line is shell)
                command, shell=True, env=env, start_new_session=True,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True, errors="replace",
            )  # fmt: skip
            self.procs[name] = proc
            self._print(f"{name:<{width}} | started (pid {proc.pid})\n")
            threading.Thread(
                target=self._relay, args=(f"{name:<{width}} | ", proc), daemon=True
            ).start()

    def _relay(self, prefix: str, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self._print(prefix + line)

    def _print(self, text: str) -> None:
        with self._out:
            sys.stdout.write(text)
            sys.stdout.flush()

    def wait_any(self) -> int:
        """Block until one process ends (then the stack is broken): its code."""
        while True:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    self._print(f"{name} exited ({proc.returncode}); stopping\n")
                    return proc.returncode or 1
            time.sleep(0.2)

    def stop(self, grace: float = 20.0) -> None:
        try:
            for proc in self.procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + grace
            for proc in self.procs.values():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(max(0.0, deadline - time.monotonic()))
        finally:  # also on a second Ctrl-C: nothing outlives make run
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            for proc in self.procs.values():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


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
