"""A Prometheus scrape target for a process that has no web server of its own
(the Celery worker, beat, the relay).

Counters live in files under ``PROMETHEUS_MULTIPROC_DIR``, one per process.
The web's ``/metrics`` sums the folder it can see; where each container has
its own (docker compose, one host per process kind), every other process
serves its folder itself, and Prometheus scrapes each. Under Celery's prefork
pool the children write the files and the parent serves the sum of them all:
start the server in the parent before the pool forks, and close the
listening socket each child inherits (``close_inherited``), so a child left
behind by a killed parent does not hold the port.
"""

import logging
import os
from wsgiref.simple_server import WSGIServer

logger = logging.getLogger(__name__)

_server: WSGIServer | None = None
_owner_pid: int | None = None


def serve_metrics(port: int | None, addr: str = "0.0.0.0") -> WSGIServer | None:
    """Serve the sum of this process's metrics folder on ``addr:port``, once;
    nothing when ``port`` is unset, or in a child forked from a process that
    serves (an embedded beat: its parent serves the same folder). A port that
    cannot be bound is logged, not raised: the process's work matters more
    than its metrics (Prometheus' ``up == 0`` says the target is missing)."""
    global _server, _owner_pid
    if not port:
        return None
    if _server is not None:
        if _owner_pid == os.getpid():
            return _server
        close_inherited()
        return None
    # prometheus_client picks file-backed or in-memory values when it is first
    # imported, by PROMETHEUS_MULTIPROC_DIR, which settings set: importing it
    # with config.celery, before settings, would make every counter in-memory.
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    try:
        server, _ = start_http_server(port, addr=addr, registry=registry)
    except OSError:
        logger.exception("metrics: cannot serve on %s:%s", addr, port)
        return None
    _server, _owner_pid = server, os.getpid()
    logger.info(
        "metrics: serving %s on %s:%s",
        os.environ.get("PROMETHEUS_MULTIPROC_DIR"),
        addr,
        port,
    )
    return server


def close_inherited() -> None:
    """In a forked child: close the copy of the parent's listening socket (the
    serving thread did not survive the fork; the parent keeps serving)."""
    global _server, _owner_pid
    if _server is not None and _owner_pid != os.getpid():
        _server.socket.close()
        _server = _owner_pid = None
