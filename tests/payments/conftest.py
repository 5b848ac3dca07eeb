"""Fixtures for the webhook tests (opt-in; nothing here is autouse)."""

import ipaddress
import socket

import pytest

from payments.services.webhooks import delivery
from tests.payments.webhook_helpers import Receiver


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def webhook_settings(settings, dns):
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_HORIZON_MARGIN_SECONDS = 0
    settings.WEBHOOK_RETRY_SCHEDULE = [0, 0]  # three attempts, no waiting
    settings.WEBHOOK_READ_TIMEOUT = 2
    # The receivers listen on loopback; the SSRF guard's own tests turn it off.
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8", "::1/128"]


class FakeDNS:
    """Answers for names outside this machine, so no test sends a DNS query
    anywhere: ``names[host]`` is a list of addresses, or a list of such lists
    given out in turn (the last one repeats). ``localhost`` and IP literals go
    to the real resolver (/etc/hosts, no traffic); any other name fails."""

    def __init__(self, real):
        self.real = real
        self.names: dict[str, list] = {"example.com": ["93.184.215.14"]}
        self.asked: list[str] = []

    def __call__(self, host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name not in self.names:
            if name == "localhost" or _is_ip(name):
                return self.real(host, port, *args, **kwargs)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        self.asked.append(name)
        answers = self.names[name]
        if answers and isinstance(answers[0], list):
            answers = answers.pop(0) if len(answers) > 1 else answers[0]
        return [
            (
                socket.AF_INET6 if ":" in a else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (a, port or 0, 0, 0) if ":" in a else (a, port or 0),
            )
            for a in answers
        ]


def _is_ip(name) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@pytest.fixture
def dns(monkeypatch):
    fake = FakeDNS(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


@pytest.fixture
def in_test_transaction(monkeypatch):
    """Most tests run inside pytest-django's transaction (fast); delivery
    refuses to post inside one, so lift that guard for them. The tests that
    depend on commits are transactional and keep it."""
    monkeypatch.setattr(delivery, "_require_no_transaction", lambda: None)
