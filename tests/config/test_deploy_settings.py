"""HTTPS, HSTS and cookie settings: `manage.py check --deploy` is clean under
production settings, each one comes from the environment, and the SSL redirect
spares the endpoints probes and Prometheus call over plain HTTP."""

import base64
import os
import secrets
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory, override_settings

from config.settings import _proxy_ssl_header
from core.handlers import SurgeWSGIApplication
from tests.stack import ROOT


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _check_deploy(tmp_path, **overrides: str) -> subprocess.CompletedProcess:
    """`check --deploy` with only the variables production requires."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "SURGE_ENV": "production",
        "SURGE_VAR_DIR": str(tmp_path / "var"),
        "SECRET_KEY": secrets.token_urlsafe(50),  # 67 characters
        "VAULT_KEYS": f"k1:{_key()}",
        "VAULT_FINGERPRINT_KEY": _key(),
        "DATABASE_URL": "postgres://surge@db.invalid:5432/surge",
        "ALLOWED_HOSTS": "pay.example.com",
        **overrides,
    }
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_check_deploy_passes_cleanly_under_production_settings(tmp_path):
    result = _check_deploy(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
    assert "WARNING" not in result.stdout + result.stderr


def test_each_production_default_can_be_turned_off_from_the_environment(tmp_path):
    result = _check_deploy(
        tmp_path,
        SECURE_SSL_REDIRECT="false",
        SECURE_HSTS_SECONDS="0",
        SESSION_COOKIE_SECURE="false",
        CSRF_COOKIE_SECURE="false",
    )
    assert result.returncode == 1
    for code in ("security.W008", "security.W004", "security.W012", "W016"):
        assert code in result.stderr, result.stderr
    result = _check_deploy(
        tmp_path,
        SECURE_HSTS_PRELOAD="false",
        SECURE_HSTS_INCLUDE_SUBDOMAINS="false",
    )
    assert "security.W021" in result.stderr and "security.W005" in result.stderr


def test_outside_production_every_https_default_is_off(settings):
    assert settings.SURGE_ENV == "test"
    assert not settings.SECURE_SSL_REDIRECT
    assert settings.SECURE_HSTS_SECONDS == 0
    assert not settings.SECURE_HSTS_INCLUDE_SUBDOMAINS
    assert not settings.SECURE_HSTS_PRELOAD
    assert not settings.SESSION_COOKIE_SECURE
    assert not settings.CSRF_COOKIE_SECURE
    assert settings.SECURE_PROXY_SSL_HEADER is None


@pytest.mark.parametrize(
    "value, header",
    [
        ("X-Forwarded-Proto=https", ("HTTP_X_FORWARDED_PROTO", "https")),
        ("HTTP_X_FORWARDED_PROTO=https", ("HTTP_X_FORWARDED_PROTO", "https")),
        ("x-scheme = https", ("HTTP_X_SCHEME", "https")),
        ("", None),
    ],
)
def test_the_proxy_ssl_header_is_read_as_name_equals_value(value, header):
    assert _proxy_ssl_header(value) == header


@pytest.mark.parametrize("value", ["X-Forwarded-Proto", "=https", "X-Forwarded-Proto="])
def test_a_malformed_proxy_ssl_header_is_refused(value):
    with pytest.raises(ImproperlyConfigured, match="Header-Name=value"):
        _proxy_ssl_header(value)


def _status(app, path: str, **headers) -> tuple[str, dict]:
    seen = {}

    def start_response(status, response_headers):
        seen["status"], seen["headers"] = status, dict(response_headers)

    b"".join(app(RequestFactory().get(path, **headers).environ, start_response))
    return seen["status"], seen["headers"]


@pytest.mark.django_db(transaction=True)
def test_the_ssl_redirect_spares_health_and_metrics_and_trusts_the_proxy():
    with override_settings(
        SECURE_SSL_REDIRECT=True,
        SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"),
        SECURE_HSTS_SECONDS=3600,
    ):
        app = SurgeWSGIApplication()  # its middleware reads the settings now
        status, headers = _status(app, "/v1/balance")
        assert status.startswith("301")
        assert headers["Location"] == "https://testserver/v1/balance"
        assert _status(app, "/health/live")[0].startswith("200")
        assert _status(app, "/health/ready")[0].startswith("200")
        assert _status(app, "/metrics")[0].startswith("200")
        # Through the TLS-terminating proxy: no redirect, and HSTS is sent.
        status, headers = _status(app, "/v1/balance", HTTP_X_FORWARDED_PROTO="https")
        assert status.startswith("401")
        assert headers["Strict-Transport-Security"] == "max-age=3600"
