import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_metrics_expose_intake_counter_and_outbox_gauges(api, token):
    resp = api.post(
        "/v1/payments",
        data={"amount": 100, "currency": "usd", "source": token.id},
        format="json",
        HTTP_IDEMPOTENCY_KEY="m1",
    )
    assert resp.status_code == 202
    text = Client().get("/metrics").content.decode()
    assert 'surge_payments_initiated_total{channel="single"}' in text
    assert "surge_outbox_unpublished 1.0" in text
    assert 'surge_payments_open{status="pending"} 1.0' in text
    assert "surge_outbox_lag_seconds" in text
    assert "surge_dead_letters_open 0.0" in text


def test_alert_rules_and_dashboard_use_only_exported_metrics(api, token):
    """ops/ must not alert on a metric name that /metrics does not export."""
    import json
    import re
    from pathlib import Path

    import yaml

    from payments import metrics

    metrics.SETTLE_LATENCY.observe(0.1)  # make sure the histogram has a sample
    metrics.payment_finished("failed", "test", 1)
    metrics.webhook_deliveries("succeeded", 1)
    metrics.rate_limited("mer_test", "key")
    client = Client()
    client.get("/health/live")  # a request, so the request series exist
    exported = client.get("/metrics").content.decode()
    ops = Path(__file__).resolve().parents[2] / "ops"
    rules = yaml.safe_load((ops / "prometheus" / "alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dashboard = json.loads((ops / "grafana" / "surge-dashboard.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    names = {
        n for e in exprs for n in re.findall(r"\b((?:surge|django_http)_[a-z_]+)", e)
    }
    assert names
    missing = sorted(
        n for n in names if f"\n{n}" not in exported and f"# TYPE {n}" not in exported
    )
    assert not missing, missing
