import socket

import pytest

from tests.attack.world import make_world
from tests.payments.conftest import FakeDNS


@pytest.fixture(autouse=True)
def _attack_settings(settings, monkeypatch):
    """No DNS query leaves the machine (a fuzzed webhook URL names any host:
    every name but localhost fails), and webhook URLs may be loopback over
    HTTP so that an endpoint can exist without a name to resolve."""
    fake = FakeDNS(socket.getaddrinfo)
    fake.names.clear()
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]


@pytest.fixture
def victim(db):
    return make_world()


@pytest.fixture
def attacker(db):
    return make_world()


def pytest_collection_modifyitems(items):
    """Schemathesis 4.32 names each operation's item for pytest before 9.2,
    which builds the node id from the bare function name: every fuzzed
    operation would get the same id, and pytest-xdist would run only one of
    them. Give each its operation back as the id's parameter."""
    for item in items:
        label = getattr(item, "operation_label", None)
        if label and item._id.params is None:
            item._id = item._id.with_params(label)
