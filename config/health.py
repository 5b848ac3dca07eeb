"""Health endpoints: ``/health/live`` (the process answers) and ``/health/ready``
(PostgreSQL, Redis and the Celery broker reachable, every migration applied).

No authentication, so nothing sensitive is said: a failed check names the
dependency and the kind of error (``ConnectionRefusedError: Connection
refused``), never a URL, a message from a server or a traceback; the log line
has the rest. The checks run side by side on a small pool of threads and the
answer waits ``CHECK_TIMEOUT`` seconds at most: a dependency that hangs (a
black-holed host) is reported as timed out instead of holding the probe, and a
pool thread stuck on it delays no request but the next probes.
"""

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait

import redis
from celery import current_app
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import JsonResponse
from django.views.decorators.http import require_safe

logger = logging.getLogger(__name__)

CHECK_TIMEOUT = 2.0  # seconds for the whole readiness answer
_CLIENT_TIMEOUT = 1.5  # each client's own connect/read timeout, inside it

_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="surge-health")

Result = dict[str, str]


def _ok() -> Result:
    return {"status": "ok"}


def _failed(error: str) -> Result:
    return {"status": "failed", "error": error}


def _reason(exc: BaseException) -> str:
    """The exception's class and, for an OS-level error anywhere in its chain,
    the operating system's words (``Connection refused``): what a probe may
    show. Server messages can hold host names, users or URLs; they stay in the
    log."""
    seen = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return f"{type(seen).__name__}: {seen.strerror}"
        if isinstance(seen, TimeoutError):
            return type(seen).__name__
        seen = seen.__cause__ or seen.__context__
    return type(exc).__name__


def _probe_connection():
    """A database connection of the probe's own, from the default one's
    settings: never one of the pool's (a probe must not wait for a slot, nor
    take one from a request), with libpq's connect timeout (2 s, its minimum)
    and a statement timeout, so a black-holed server frees the thread soon
    after the answer's deadline."""
    default = connections[DEFAULT_DB_ALIAS]
    options = {k: v for k, v in default.settings_dict["OPTIONS"].items() if k != "pool"}
    options["connect_timeout"] = 2
    timeout = f"-c statement_timeout={int(_CLIENT_TIMEOUT * 1000)}"
    options["options"] = f"{options.get('options', '')} {timeout}".strip()
    return type(default)({**default.settings_dict, "OPTIONS": options}, default.alias)


def _database() -> dict[str, Result]:
    """``SELECT 1``, then the migration plan to the graph's leaves, which must
    be empty. Runs on a pool thread, whose default connection the probe's
    replaces (connections are per thread): the migration recorder's queries
    go through ``connections[alias]``, not the wrapper it is given."""
    probe = _probe_connection()
    connections[DEFAULT_DB_ALIAS] = probe
    try:
        try:
            with probe.cursor() as cursor:
                cursor.execute("SELECT 1")
        except Exception as exc:
            logger.warning("readiness: database unreachable: %s", exc)
            return {
                "database": _failed(_reason(exc)),
                "migrations": _failed("not checked: database unreachable"),
            }
        try:
            executor = MigrationExecutor(probe)
            plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        except Exception as exc:
            logger.warning("readiness: migration state unreadable: %s", exc)
            return {"database": _ok(), "migrations": _failed(_reason(exc))}
        if plan:
            names = [
                f"{'unapply' if backwards else 'apply'} "
                f"{migration.app_label}.{migration.name}"
                for migration, backwards in plan
            ]
            return {"database": _ok(), "migrations": _failed("; ".join(names))}
        return {"database": _ok(), "migrations": _ok()}
    finally:
        probe.close()
        del connections[DEFAULT_DB_ALIAS]


def _redis() -> dict[str, Result]:
    if not settings.REDIS_URL:
        return {"redis": {"status": "skipped", "reason": "REDIS_URL is not set"}}
    client = redis.Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=_CLIENT_TIMEOUT,
        socket_timeout=_CLIENT_TIMEOUT,
    )
    try:
        client.ping()
    except Exception as exc:
        logger.warning("readiness: redis unreachable: %s", exc)
        return {"redis": _failed(_reason(exc))}
    finally:
        client.close()
    return {"redis": _ok()}


def _broker() -> dict[str, Result]:
    """Connect to the broker the way a consumer does, without kombu's retries."""
    conn = current_app.connection_for_read(
        connect_timeout=_CLIENT_TIMEOUT,  # AMQP
        transport_options={  # Redis: kombu's transport reads only these
            "socket_timeout": _CLIENT_TIMEOUT,
            "socket_connect_timeout": _CLIENT_TIMEOUT,
        },
    )
    try:
        conn.ensure_connection(max_retries=0)
    except Exception as exc:
        logger.warning("readiness: broker unreachable: %s", exc)
        return {"broker": _failed(_reason(exc))}
    finally:
        conn.release()
    return {"broker": _ok()}


CHECKS: dict[tuple[str, ...], Callable[[], dict[str, Result]]] = {
    ("database", "migrations"): _database,
    ("redis",): _redis,
    ("broker",): _broker,
}


def readiness() -> tuple[bool, dict[str, Result]]:
    """Run every check; ``(all passed or skipped, results by name)``."""
    futures = {_pool.submit(check): names for names, check in CHECKS.items()}
    wait(futures, timeout=CHECK_TIMEOUT)
    results: dict[str, Result] = {}
    for future, names in futures.items():
        if future.done() and future.exception() is None:
            results.update(future.result())
            continue
        if future.done():  # a check's own bug: report it, never raise
            error = _reason(future.exception())
            logger.error(
                "readiness check %s raised", names, exc_info=future.exception()
            )
        else:
            future.cancel()
            error = f"timed out after {CHECK_TIMEOUT:g} s"
            logger.warning("readiness: %s timed out", ", ".join(names))
        results.update({name: _failed(error) for name in names})
    ready = all(r["status"] != "failed" for r in results.values())
    return ready, results


@require_safe
def live(request):
    """The process answers; nothing else is touched."""
    response = JsonResponse({"status": "ok"})
    response["Cache-Control"] = "no-store"
    return response


@require_safe
def ready(request):
    ok, checks = readiness()
    response = JsonResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks},
        status=200 if ok else 503,
    )
    response["Cache-Control"] = "no-store"
    return response
