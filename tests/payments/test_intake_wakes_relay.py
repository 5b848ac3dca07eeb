"""Intake wakes the relays with a NOTIFY sent by its own statement.

The wake-up rides in the accept statement (a second round trip and
transaction for it cost 4% of the web's CPU): it is sent at that statement's
commit, only when the payment was inserted, at most once per window a process.
"""

import psycopg
import pytest
from django.db import connection

from payments.services import events
from payments.services.events import NOTIFY_CHANNEL

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def listener():
    db = connection.settings_dict
    conn = psycopg.connect(
        host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432,
        user=db["USER"], dbname=db["NAME"], autocommit=True,
    )  # fmt: skip
    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
    yield conn
    conn.close()


@pytest.fixture(autouse=True)
def _window_open(monkeypatch):
    monkeypatch.setattr(events, "_last_wake", 0.0)


def wakes(conn, wait: float = 0.5) -> int:
    return sum(1 for _ in conn.notifies(timeout=wait))


def post(api, token, key, amount=1000):
    body = {"amount": amount, "currency": "usd", "source": token.id}
    return api.post("/v1/payments", data=body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_an_accepted_payment_wakes_the_relays(api, token, listener):
    assert post(api, token, "k1").status_code == 202
    assert wakes(listener) == 1


def test_a_replay_sends_nothing_and_leaves_the_window_to_the_next_payment(
    api, token, listener
):
    assert post(api, token, "k1").status_code == 202
    assert wakes(listener) == 1
    events._last_wake = 0.0  # a wake-up is due: the replay claims it
    replay = post(api, token, "k1")
    assert replay.status_code == 202
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert wakes(listener, 0.3) == 0
    assert events._last_wake == 0.0  # given back
    assert post(api, token, "k2").status_code == 202
    assert wakes(listener) == 1


def test_at_most_one_wake_up_per_window(api, token, listener, monkeypatch):
    monkeypatch.setattr(events, "WAKE_WINDOW_SECONDS", 60)
    for i in range(3):
        assert post(api, token, f"k{i}").status_code == 202
    assert wakes(listener) == 1


def test_a_refused_payment_wakes_nobody(api, token, listener):
    assert post(api, token, "k1", amount=-5).status_code == 400
    assert wakes(listener, 0.3) == 0
