"""/health/live and /health/ready through the application gunicorn serves,
against the real PostgreSQL, Redis and broker of the test stack; failures are
made with closed or silent loopback ports, never by stopping a shared server."""

import json
import socket
import time

import pytest
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder
from django.test import RequestFactory

from config import health
from config.celery import app as celery_app
from tests.stack import free_port


def _get(path: str) -> tuple[int, dict, dict]:
    from config.wsgi import application

    seen = {}

    def start_response(status, headers):
        seen["status"], seen["headers"] = status, dict(headers)

    environ = RequestFactory().get(path).environ
    body = b"".join(application(environ, start_response))
    return int(seen["status"].split()[0]), seen["headers"], json.loads(body)


@pytest.fixture
def silent_port():
    """A loopback port that accepts connections (the kernel's backlog) and
    never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


def test_both_endpoints_are_served_on_the_api_middleware_stack():
    from config.wsgi import application

    assert application.handler_for("/health/live") is application.api
    assert application.handler_for("/health/ready") is application.api


def test_live_answers_200_and_touches_no_database():
    # No django_db mark: pytest-django refuses any database access here, so a
    # live check that touched PostgreSQL would answer 500.
    status, headers, body = _get("/health/live")
    assert (status, body) == (200, {"status": "ok"})
    assert headers["Cache-Control"] == "no-store"


@pytest.mark.django_db(transaction=True)
def test_ready_is_200_with_every_check_ok_on_the_test_stack():
    status, _, body = _get("/health/ready")
    assert status == 200, body
    assert body == {
        "status": "ok",
        "checks": {
            "database": {"status": "ok"},
            "migrations": {"status": "ok"},
            "redis": {"status": "ok"},
            "broker": {"status": "ok"},
        },
    }
    # The probe's own connection is closed again: no session of it is left.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchone()[0] == 0


@pytest.mark.django_db(transaction=True)
def test_ready_is_503_naming_the_broker_when_its_port_is_closed(monkeypatch):
    port = free_port()  # bound, then closed: nothing listens there
    url = f"redis://:hunter2-secret@127.0.0.1:{port}/0"
    # Celery reads CELERY_BROKER_URL from the environment before its config.
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    monkeypatch.setitem(celery_app.conf, "broker_url", url)
    start = time.monotonic()
    status, _, body = _get("/health/ready")
    assert time.monotonic() - start < health.CHECK_TIMEOUT + 0.5
    assert status == 503
    assert body["status"] == "unavailable"
    assert body["checks"]["broker"] == {
        "status": "failed",
        "error": "ConnectionRefusedError: Connection refused",
    }
    assert body["checks"]["database"] == {"status": "ok"}
    assert body["checks"]["redis"] == {"status": "ok"}
    text = json.dumps(body)
    assert "hunter2" not in text and str(port) not in text
    assert "Traceback" not in text


@pytest.mark.django_db(transaction=True)
def test_ready_is_503_naming_redis_when_its_port_is_closed(settings):
    port = free_port()
    settings.REDIS_URL = f"redis://:hunter2-secret@127.0.0.1:{port}/0"
    status, _, body = _get("/health/ready")
    assert status == 503
    assert body["checks"]["redis"] == {
        "status": "failed",
        "error": "ConnectionRefusedError: Connection refused",
    }
    assert body["checks"]["broker"] == {"status": "ok"}
    assert "hunter2" not in json.dumps(body)


@pytest.mark.django_db(transaction=True)
def test_ready_without_redis_url_skips_redis_and_stays_ready(settings):
    settings.REDIS_URL = None
    status, _, body = _get("/health/ready")
    assert status == 200, body
    assert body["checks"]["redis"]["status"] == "skipped"


@pytest.mark.django_db(transaction=True)
def test_a_dependency_that_never_answers_is_reported_within_the_deadline(
    settings, monkeypatch, silent_port
):
    settings.REDIS_URL = f"redis://127.0.0.1:{silent_port}/0"
    # Shorter than the Redis client's own timeout, so the deadline decides.
    monkeypatch.setattr(health, "CHECK_TIMEOUT", 0.5)
    start = time.monotonic()
    status, _, body = _get("/health/ready")
    assert time.monotonic() - start < 1.2
    assert status == 503
    assert body["checks"]["redis"] == {
        "status": "failed",
        "error": "timed out after 0.5 s",
    }
    # With the whole deadline, the client's own timeout ends the wait.
    monkeypatch.setattr(health, "CHECK_TIMEOUT", 2.0)
    status, _, body = _get("/health/ready")
    assert body["checks"]["redis"] == {"status": "failed", "error": "TimeoutError"}


@pytest.mark.django_db(transaction=True)
def test_a_database_that_never_answers_is_reported_and_its_probe_gives_up(
    monkeypatch, silent_port
):
    # The probe's connection is made from these settings; the test's own is
    # open already and unaffected.
    monkeypatch.setitem(connection.settings_dict, "PORT", str(silent_port))
    monkeypatch.setattr(health, "CHECK_TIMEOUT", 0.5)
    status, _, body = _get("/health/ready")
    assert status == 503
    assert body["checks"]["database"] == {
        "status": "failed",
        "error": "timed out after 0.5 s",
    }
    # Given longer, libpq's own connect timeout (2 s) ends the attempt.
    monkeypatch.setattr(health, "CHECK_TIMEOUT", 4.0)
    start = time.monotonic()
    status, _, body = _get("/health/ready")
    assert time.monotonic() - start < 3.5
    assert body["checks"]["database"] == {
        "status": "failed",
        "error": "OperationalError",
    }
    assert body["checks"]["migrations"]["status"] == "failed"


@pytest.mark.django_db(transaction=True)
def test_ready_is_503_naming_an_unapplied_migration():
    """The newest payments migration's record is removed, as if it had never
    run: the plan the executor computes is no longer empty."""
    loader = MigrationLoader(connection)
    (leaf,) = [n for n in loader.graph.leaf_nodes() if n[0] == "payments"]
    recorder = MigrationRecorder(connection)
    recorder.record_unapplied(*leaf)
    try:
        status, _, body = _get("/health/ready")
    finally:
        recorder.record_applied(*leaf)
    assert status == 503
    assert body["checks"]["migrations"] == {
        "status": "failed",
        "error": f"apply payments.{leaf[1]}",
    }
    assert body["checks"]["database"] == {"status": "ok"}
    status, _, body = _get("/health/ready")
    assert status == 200, body


def test_only_get_and_head_are_allowed():
    from config.wsgi import application

    seen = {}
    environ = RequestFactory().post("/health/live").environ
    b"".join(application(environ, lambda s, h: seen.update(status=s)))
    assert seen["status"].startswith("405")
