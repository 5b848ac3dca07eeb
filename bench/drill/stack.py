"""The drill's stack, shaped like a multi-host deployment on one machine.

Two gunicorn web servers behind haproxy, two Celery workers (distinct node
names), two relays, two beats, a primary and a secondary gateway simulator,
and a PostgreSQL, a Redis and (with ``--broker rabbitmq``) a RabbitMQ node of
the drill's own, each on a port of its own with its data under the drill's
folder, so that the drill may restart them. The machine's shared servers are
never touched.
"""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.processes import Processes, free_port, port_open, wait_port
from config.embedded_db import EmbeddedPostgres

ROOT = Path(__file__).resolve().parent.parent.parent
PY = sys.executable
BIN = Path(PY).parent

# Rabbitmq's own start script (the one in /usr/sbin switches to the rabbitmq
# user, whose home holds the shared node's cookie).
RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
RABBITMQ_CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"

HAPROXY_CFG = """\
global
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    # A refused connection (a web server just killed) is retried on the other
    # server; a request that reached a server is never re-sent by haproxy:
    # the client retries it with its idempotency key.
    retries 3
    option redispatch
frontend api
    bind 127.0.0.1:{port}
    default_backend web
backend web
    balance roundrobin
    option httpchk
    http-check send meth GET uri /health/live ver HTTP/1.1 hdr Host 127.0.0.1
    http-check expect status 200
{servers}
"""


class DrillStack:
    """Every process the drill owns; ``down()`` ends all of them."""

    def __init__(self, folder: Path, *, broker: str, workers: int = 2):
        self.dir = folder
        self.dir.mkdir(parents=True, exist_ok=True)
        self.broker = broker
        self.workers = workers
        self.web_ports = [free_port(), free_port()]
        self.lb_port = free_port()
        self.redis_port = free_port()
        self.gateway_ports = {"primary": free_port(), "secondary": free_port()}
        self.amqp_port = free_port() if broker == "rabbitmq" else None
        self.amqp_dist_port = free_port() if broker == "rabbitmq" else None
        self.pg = EmbeddedPostgres(self.dir, max_connections=300)
        redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        if broker == "rabbitmq":
            broker_url = f"amqp://guest:guest@127.0.0.1:{self.amqp_port}//"
        else:
            broker_url = f"redis://127.0.0.1:{self.redis_port}/1"
        self.env = {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith("SURGE_") and k != "DATABASE_URL"
            },
            # No DATABASE_URL: settings then use the embedded PostgreSQL under
            # SURGE_VAR_DIR (config/embedded_db.py), i.e. this one.
            "SURGE_VAR_DIR": str(self.dir),
            "CELERY_BROKER_URL": broker_url,
            "REDIS_URL": redis_url,
            "SURGE_ENV": "bench",
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "json",
            "PROMETHEUS_MULTIPROC_DIR": str(self.dir / "prometheus"),
            "GATEWAY_SIMULATOR_URLS": ",".join(
                f"{name}=http://127.0.0.1:{port}"
                for name, port in self.gateway_ports.items()
            ),
            # The drill's clock runs fast: a payment the broker lost is
            # re-driven after 15 s, not production's 60 (docs/operations.md).
            "SURGE_SWEEP_AFTER_SECONDS": "15",
            "SURGE_SWEEP_EVERY_SECONDS": "5",
            "CELERY_PREFETCH": "1",
        }
        for name in ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL"):
            os.environ.pop(name, None)  # never the shared servers by accident
        self.exits: list[tuple[str, int, str]] = []
        self.procs = Processes(
            cwd=ROOT, env=self.env, logs=self.dir / "logs",
            pid_file=self.dir / "pids",
        )  # fmt: skip

    # --- the servers the drill owns ------------------------------------------
    def start_postgres(self) -> None:
        self.pg.start()

    def restart_postgres(self, pause: float) -> None:
        """Fast shutdown: every connection drops, open transactions roll back."""
        self.pg.stop()
        time.sleep(pause)
        self.pg.start()

    def start_redis(self) -> None:
        folder = self.dir / "redis"
        folder.mkdir(exist_ok=True)
        self.procs.start(
            "redis",
            ["redis-server", "--port", self.redis_port, "--bind", "127.0.0.1",
             "--dir", folder, "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--protected-mode", "yes"],
            append=True,
        )  # fmt: skip
        wait_port(self.redis_port, 30)

    def restart_redis(self, pause: float, *, keep_data: bool) -> None:
        """Keeping its data (SHUTDOWN SAVE, as a planned restart does), or
        empty (SIGKILL and no dump: a crash with nothing persisted)."""
        dump = self.dir / "redis" / "dump.rdb"
        if keep_data:
            subprocess.run(
                ["redis-cli", "-p", str(self.redis_port), "shutdown", "save"],
                capture_output=True, timeout=60, check=False,
            )  # fmt: skip
            self.procs.procs["redis"].wait(timeout=60)
            self.procs.kill("redis")
        else:
            self.procs.kill("redis")
            dump.unlink(missing_ok=True)
        time.sleep(pause)
        self.start_redis()

    def start_rabbitmq(self) -> None:
        base = self.dir / "rabbitmq"
        base.mkdir(exist_ok=True)
        (base / "enabled_plugins").write_text("[].\n")
        (base / "rabbitmq-env.conf").write_text("")  # not /etc/rabbitmq's
        (base / "rabbitmq.conf").write_text(
            "loopback_users.guest = true\n"
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
        )
        self.procs.start(
            "rabbitmq", [RABBITMQ_SERVER], append=True, **self._rabbitmq_env()
        )
        wait_port(self.amqp_port, 120)

    def _rabbitmq_env(self) -> dict:
        base = self.dir / "rabbitmq"
        return {
            # Its own node, ports, cookie (HOME) and files: nothing shared
            # with the machine's RabbitMQ but the epmd name service.
            "HOME": str(base),
            "RABBITMQ_NODENAME": f"surge-drill-{self.amqp_port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.amqp_dist_port),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_PID_FILE": str(base / "pid"),
            "RABBITMQ_LOGS": str(base / "log" / "node.log"),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
        }

    def restart_rabbitmq(self, pause: float) -> None:
        """A clean stop of the node (its quorum queues keep their messages)."""
        self.procs.kill("rabbitmq", signal.SIGTERM, timeout=60)
        time.sleep(pause)
        self.start_rabbitmq()

    def restart_broker(self, pause: float) -> None:
        if self.broker == "rabbitmq":
            self.restart_rabbitmq(pause)
        else:
            self.restart_redis(pause, keep_data=True)

    # --- Surge's processes ------------------------------------------------------
    def run(self, *argv: str, timeout: float = 600) -> str:
        done = subprocess.run(
            [str(a) for a in argv], cwd=ROOT, env=self.env, capture_output=True,
            text=True, check=False, timeout=timeout,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"{argv} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def argv(self, name: str) -> list:
        """How each of Surge's processes starts (and restarts)."""
        if name.startswith("web"):
            port = self.web_ports[int(name[3:])]
            return [
                BIN / "gunicorn", "config.wsgi:application",
                "-b", f"127.0.0.1:{port}", "-k", "gthread", "-w", "2",
                "--threads", "8", "--backlog", "2048", "--log-level", "warning",
            ]  # fmt: skip
        if name.startswith("worker"):
            return [
                BIN / "celery", "-A", "config", "worker",
                "-Q", "default,validate,execute,settle", "-P", "prefork", "-c", "3",
                "-n", f"drill-{name}@%h", "--without-gossip", "--without-mingle",
                "--without-heartbeat", "--loglevel", "WARNING",
            ]  # fmt: skip
        if name.startswith("relay"):
            return [PY, "manage.py", "run_relay", "--poll-seconds", "0.5"]
        if name.startswith("beat"):
            return [
                BIN / "celery", "-A", "config", "beat", "--loglevel", "WARNING",
                "--schedule", self.dir / f"{name}-schedule",
            ]  # fmt: skip
        if name.startswith("gateway-"):
            gateway = name.removeprefix("gateway-")
            return [
                PY, "manage.py", "run_gateway_simulator",
                "--port", self.gateway_ports[gateway], "--latency-ms", "20-50",
                "--timeout-delay-ms", "8000",
                "--log-file", self.dir / f"{name}.jsonl",
            ]  # fmt: skip
        if name == "haproxy":
            return ["haproxy", "-db", "-f", self.dir / "haproxy.cfg"]
        raise KeyError(name)

    def start(self, name: str) -> None:
        self.procs.start(name, self.argv(name), append=True)

    def surge_processes(self) -> list[str]:
        return [
            "web0", "web1", *(f"worker{i}" for i in range(self.workers)),
            "relay0", "relay1", "beat0", "beat1",
        ]  # fmt: skip

    def up(self) -> None:
        (self.dir / "prometheus").mkdir(exist_ok=True)
        self.start_postgres()
        self.start_redis()
        if self.broker == "rabbitmq":
            self.start_rabbitmq()
        self.run(PY, "manage.py", "migrate", "--noinput", "-v", "0")
        for gateway in self.gateway_ports:
            self.start(f"gateway-{gateway}")
        servers = "\n".join(
            f"    server web{i} 127.0.0.1:{port} check inter 500 fall 2 rise 1"
            for i, port in enumerate(self.web_ports)
        )
        (self.dir / "haproxy.cfg").write_text(
            HAPROXY_CFG.format(port=self.lb_port, servers=servers)
        )
        for name in self.surge_processes():
            self.start(name)
        self.start("haproxy")
        for port in (*self.gateway_ports.values(), *self.web_ports, self.lb_port):
            wait_port(port, 60)

    def down(self) -> None:
        self.procs.stop_all()
        self.pg.stop()

    def supervise(self, stop: threading.Event, pause: float = 1.0) -> None:
        """Restart any of Surge's processes that exits on its own, as systemd's
        ``Restart=always`` or compose's ``restart: unless-stopped`` would; each
        exit is noted in ``self.exits`` with the last error its log shows."""
        watched = (*self.surge_processes(), "gateway-primary", "gateway-secondary")
        while not stop.wait(0.5):
            for name in watched:
                proc = self.procs.procs.get(name)
                if proc is None or proc.poll() is None:
                    continue  # being restarted by a fault, or running
                self.exits.append((name, proc.returncode, self._last_error(name)))
                print(f"supervisor: {name} exited ({proc.returncode}); restarting",
                      flush=True)  # fmt: skip
                time.sleep(pause)
                if self.procs.procs.get(name) is proc:  # no fault took it meanwhile
                    self.start(name)

    def _last_error(self, name: str) -> str:
        for line in reversed(self.procs.log_tail(name, 20000).splitlines()):
            if '"critical"' in line or '"error"' in line or "Error" in line:
                return line[:300]
        return ""


def haproxy_binary() -> str | None:
    return shutil.which("haproxy")


__all__ = ["DrillStack", "haproxy_binary", "port_open"]
