import socket
from dataclasses import dataclass, field

import httpx
import pytest
from django.conf import settings as django_settings

from gateways import breakers, services
from gateways.simulator.server import SimulatorThread

VISA = "4242424242424242"
CARD_DECLINED = "4000000000000002"
INSUFFICIENT_FUNDS = "4000000000009995"
PROCESSING_ERROR = "4000000000000119"
OTHER_VALID = "5555555555554444"


@dataclass(frozen=True)
class Card:
    """Stand-in for the vault's Card: same attributes, PAN masked in repr."""

    pan: str = field(repr=False)
    exp_month: int = 12
    exp_year: int = 2099

    def __repr__(self) -> str:
        return f"Card(****{self.pan[-4:]}, {self.exp_month}/{self.exp_year})"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def control(sim: SimulatorThread, **knobs) -> dict:
    return httpx.post(f"{sim.url}/_control", json=knobs, timeout=5).json()


def _clear_breaker_keys() -> None:
    client = breakers.redis_client()
    keys = list(client.scan_iter("surge:gateway:*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def simulators():
    sims = {"simulator": SimulatorThread(), "simulator_b": SimulatorThread()}
    yield sims
    for sim in sims.values():
        sim.stop()


@pytest.fixture
def sim(simulators):
    return simulators["simulator"]


@pytest.fixture
def sim_b(simulators):
    return simulators["simulator_b"]


@pytest.fixture(autouse=True)
def gateway_settings(settings, request):
    """Short timeouts and backoff, a fresh registry and clean breaker keys."""
    settings.GATEWAY_RETRY_BASE_MS = 5
    settings.GATEWAY_RETRY_CAP_MS = 20
    settings.GATEWAY_BREAKER_FAIL_MAX = 3
    settings.GATEWAY_BREAKER_RESET_SECONDS = 1.5
    settings.GATEWAY_CONNECT_TIMEOUT = 0.5
    settings.GATEWAY_READ_TIMEOUT = 0.4
    settings.GATEWAY_INQUIRY_TRIES = 3
    urls = {"dead": f"http://127.0.0.1:{free_port()}"}
    if "simulators" in request.fixturenames:
        sims = request.getfixturevalue("simulators")
        urls.update({name: s.url for name, s in sims.items()})
    settings.GATEWAY_SIMULATOR_URLS = urls
    assert django_settings.REDIS_URL, "breaker tests need Redis"
    services.reset()
    _clear_breaker_keys()
    yield settings
    services.reset()
