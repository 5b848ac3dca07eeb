"""docker-compose.yml, the Dockerfile and ops/ agree: Prometheus scrapes every
process kind where it serves, Grafana loads the dashboard from where the
provider looks, and the health checks ask for endpoints that exist. (No Docker
daemon in the test environment: this reads the files, the rest of tests/ops
runs what they describe.)"""

import re
from urllib.parse import urlsplit

import yaml
from django.urls import resolve

from tests.stack import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
PROMETHEUS = yaml.safe_load((ROOT / "ops/prometheus/prometheus.yml").read_text())


def _scrape_jobs() -> dict[str, tuple[str, int, str]]:
    jobs = {}
    for job in PROMETHEUS["scrape_configs"]:
        ((target,),) = [c["targets"] for c in job["static_configs"]]
        host, port = target.split(":")
        jobs[job["job_name"]] = (host, int(port), job.get("metrics_path", "/metrics"))
    return jobs


def _health_url(test: list[str]) -> str:
    (url,) = re.findall(r"http://[^']+", " ".join(test))
    return url


def test_prometheus_scrapes_each_process_kind_on_the_port_it_serves():
    jobs = _scrape_jobs()
    assert set(jobs) == {"surge-web", "surge-worker", "surge-relay", "surge-beat"}
    host, port, path = jobs["surge-web"]
    assert (host, port, path) == ("web", 8000, "/metrics")
    assert resolve(path).url_name == "metrics"
    for job in ("surge-worker", "surge-relay", "surge-beat"):
        host, port, _ = jobs[job]
        env = SERVICES[host]["environment"]
        assert env["SURGE_METRICS_PORT"] == str(port), job
        # The compose network's hosts may scrape it (the default address).
        assert env.get("SURGE_METRICS_ADDR", "0.0.0.0") == "0.0.0.0", job
    assert "SURGE_METRICS_PORT" not in SERVICES["web"].get("environment", {})


def test_prometheus_loads_this_folder_and_grafana_the_dashboard():
    prometheus = SERVICES["prometheus"]
    assert "./ops/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert PROMETHEUS["rule_files"] == ["alerts.yml"]

    grafana = SERVICES["grafana"]
    provider = yaml.safe_load(
        (ROOT / "ops/grafana/provisioning/dashboards/surge.yml").read_text()
    )["providers"][0]["options"]["path"]
    assert (
        f"./ops/grafana/surge-dashboard.json:{provider}/surge-dashboard.json:ro"
        in grafana["volumes"]
    )
    assert (
        "./ops/grafana/provisioning:/etc/grafana/provisioning:ro"
        in (grafana["volumes"])
    )
    (source,) = yaml.safe_load(
        (ROOT / "ops/grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"]
    assert urlsplit(source["url"]).hostname == "prometheus"
    assert source["type"] == "prometheus" and source["isDefault"]


def test_health_checks_ask_for_endpoints_that_exist():
    dockerfile = (ROOT / "Dockerfile").read_text()
    (image_check,) = re.findall(r"HEALTHCHECK[^\n]*\n\s*CMD (\[.*\])", dockerfile)
    live = urlsplit(_health_url(yaml.safe_load(image_check)))
    assert (live.port, resolve(live.path).url_name) == (8000, "health-live")

    ready = urlsplit(_health_url(SERVICES["web"]["healthcheck"]["test"]))
    assert (ready.port, resolve(ready.path).url_name) == (8000, "health-ready")
    for name in ("worker", "relay", "beat"):
        url = urlsplit(_health_url(SERVICES[name]["healthcheck"]["test"]))
        assert url.port == int(SERVICES[name]["environment"]["SURGE_METRICS_PORT"])
    assert SERVICES["migrate"]["healthcheck"] == {"disable": True}
    # The hosts the checks and Prometheus use are allowed.
    allowed = SERVICES["web"]["environment"]["ALLOWED_HOSTS"].split(",")
    assert {"127.0.0.1", "web"} <= set(allowed)
