"""Starting and stopping the stack's processes: one helper for the benchmark,
the drill and the tests' worker stacks.

Every process runs in a session of its own (its own process group), so a
SIGKILL reaches its whole tree (gunicorn's workers, Celery's pool) and nothing
else, and stopping one never touches a process someone else started.
"""

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    """A loopback port nothing listens on now (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listening on {port} after {timeout}s")


class Processes:
    """Named processes, each in its own session, each logging to a file.

    ``pid_file``, when given, lists every process group ever started (one pid
    a line): whoever started this may clean up by those ids if this process
    itself was killed before it could.
    """

    def __init__(
        self, *, cwd: Path, env: dict, logs: Path, pid_file: Path | None = None
    ):
        self.cwd, self.env, self.logs = cwd, env, logs
        self.pid_file = pid_file
        self.procs: dict[str, subprocess.Popen] = {}

    def start(
        self, name: str, argv, *, append: bool = False, **extra_env: str
    ) -> subprocess.Popen:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = (self.logs / f"{name}.log").open("ab" if append else "wb")
        try:
            proc = subprocess.Popen(
                [str(a) for a in argv], cwd=self.cwd, env={**self.env, **extra_env},
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        finally:
            log.close()  # the child holds its own copy
        self.procs[name] = proc
        if self.pid_file is not None:
            with self.pid_file.open("a") as fh:
                fh.write(f"{proc.pid}\n")
        return proc

    def alive(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def kill(self, name: str, sig: int = signal.SIGKILL, timeout: float = 30) -> None:
        """Signal the process's whole group and wait for the leader to exit."""
        proc = self.procs.pop(name)
        _signal_group(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        if sig != signal.SIGKILL:
            _signal_group(proc.pid, signal.SIGKILL)  # stragglers of the group

    def stop_all(self, timeout: float = 15) -> None:
        """SIGTERM every group, then SIGKILL whatever is left of each."""
        for proc in self.procs.values():
            if proc.poll() is None:
                _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            _signal_group(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        self.procs.clear()

    def log_tail(self, name: str, chars: int = 4000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def kill_groups_listed(pid_file: Path) -> None:
    """SIGKILL every process group a ``Processes`` listed in ``pid_file`` (the
    drill's test cleans up with it when the drill itself could not)."""
    if not pid_file.exists():
        return
    for line in pid_file.read_text().split():
        _signal_group(int(line), signal.SIGKILL)
