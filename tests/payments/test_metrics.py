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
