"""The alert rules and the scrape config, checked and unit-tested by promtool
(Debian's `prometheus` package; `make test` installs it when it is missing).
A missing promtool fails these tests: the rules would otherwise ship untested."""

import shutil
import subprocess

import pytest
import yaml

from tests.stack import ROOT

PROMETHEUS = ROOT / "ops" / "prometheus"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not installed: `make test` installs it "
            "(apt-get install prometheus), or install it yourself."
        )
    return path


def _run(promtool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [promtool, *args],
        cwd=PROMETHEUS, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_alert_rules_are_valid(promtool):
    result = _run(promtool, "check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_each_alert_fires_where_it_should_and_nowhere_else(promtool):
    result = _run(promtool, "test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_scrape_config_is_valid_and_loads_the_rules(promtool):
    result = _run(promtool, "check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_every_alert_has_a_firing_case_in_the_fixtures():
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    fixtures = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())
    fired, quiet = set(), set()
    for case in fixtures["tests"]:
        for check in case["alert_rule_test"]:
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    assert alerts - fired == set(), "alerts never shown firing"
    assert alerts - quiet == set(), "alerts never shown quiet"
