"""In-process gateway simulators on loopback for the payments stage tests
(the HTTP acquirer simulator, real breakers in Redis): opt-in fixtures."""

import httpx
import pytest

from gateways import services
from gateways.services import charge_records
from gateways.simulator.server import SimulatorThread
from tests.gateways.conftest import _clear_breaker_keys, free_port


def control(sim: SimulatorThread, **knobs) -> dict:
    return httpx.post(f"{sim.url}/_control", json=knobs, timeout=5).json()


def charges_for(gateway: str, payment_id: str) -> list:
    """The simulator's own log of charges for one payment (its records)."""
    return [
        r
        for r in charge_records(gateway)
        if r.kind == "charge" and r.payment_id == payment_id
    ]


@pytest.fixture
def simulators(settings):
    """Two simulators, ``simulator`` (primary) and ``simulator_b``; short
    timeouts, backoff and breaker reset; a fresh registry and breakers."""
    sims = {"simulator": SimulatorThread(), "simulator_b": SimulatorThread()}
    settings.GATEWAY_RETRY_BASE_MS = 5
    settings.GATEWAY_RETRY_CAP_MS = 20
    settings.GATEWAY_BREAKER_FAIL_MAX = 3
    settings.GATEWAY_BREAKER_RESET_SECONDS = 1.5
    settings.GATEWAY_CONNECT_TIMEOUT = 0.5
    settings.GATEWAY_READ_TIMEOUT = 0.4
    settings.GATEWAY_INQUIRY_TRIES = 2
    settings.GATEWAY_SIMULATOR_URLS = {
        "dead": f"http://127.0.0.1:{free_port()}",
        **{name: s.url for name, s in sims.items()},
    }
    services.reset()
    _clear_breaker_keys()
    yield sims
    services.reset()
    _clear_breaker_keys()
    for sim in sims.values():
        sim.stop()
