"""Settings refuse any database but PostgreSQL, whatever DATABASE_URL says."""

import os
import subprocess
import sys

import pytest

from tests.stack import ROOT


def _setup_with(**overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", **overrides}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize("url", ["sqlite:///surge.sqlite3", "mysql://u@127.0.0.1/db"])
def test_a_non_postgresql_database_url_is_refused_naming_database_url(url):
    result = _setup_with(DATABASE_URL=url)
    assert result.returncode != 0
    assert "ImproperlyConfigured: DATABASE_URL must be a PostgreSQL URL" in (
        result.stderr
    )


def test_without_database_url_settings_point_at_the_embedded_server(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    code = (
        "import django; django.setup()\n"
        "from django.db import connection\n"
        "print(connection.vendor, connection.settings_dict['HOST'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
        env={**env, "DJANGO_SETTINGS_MODULE": "config.settings",
             "SURGE_VAR_DIR": str(tmp_path)},
    )  # fmt: skip
    assert result.stdout.split() == ["postgresql", str(tmp_path / "postgres")]
