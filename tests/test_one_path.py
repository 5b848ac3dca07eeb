"""PostgreSQL is the only database: no product module or migration keeps a
second code path for another one."""

import re

import pytest

from tests.stack import ROOT

APPS = ("core", "vault", "gateways", "ledger", "payments", "config", "bench")
FORBIDDEN = re.compile(r"sqlite|connection\.vendor|\.vendor\s*[!=]=", re.IGNORECASE)


def _sources():
    for app in APPS:
        yield from sorted((ROOT / app).rglob("*.py"))


@pytest.mark.parametrize(
    "path", list(_sources()), ids=lambda p: str(p.relative_to(ROOT))
)
def test_no_second_database_path(path):
    hits = [
        f"{n}: {line.strip()}"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if FORBIDDEN.search(line)
    ]
    assert hits == []
