"""Fixtures for the webhook tests (opt-in; nothing here is autouse)."""

import pytest

from payments.services.webhooks import delivery
from tests.payments.webhook_helpers import Receiver


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def webhook_settings(settings):
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_HORIZON_MARGIN_SECONDS = 0
    settings.WEBHOOK_RETRY_SCHEDULE = [0, 0]  # three attempts, no waiting
    settings.WEBHOOK_READ_TIMEOUT = 2


@pytest.fixture
def in_test_transaction(monkeypatch):
    """Most tests run inside pytest-django's transaction (fast); delivery
    refuses to post inside one, so lift that guard for them. The tests that
    depend on commits are transactional and keep it."""
    monkeypatch.setattr(delivery, "_require_no_transaction", lambda: None)
