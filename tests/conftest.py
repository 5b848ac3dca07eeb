import importlib
import os

import pytest
from django.db import connection

from payments.services import keys as key_service
from tests.apiclient import APIClient
from tests.factories import MerchantFactory, TokenFactory


def pytest_configure(config):
    """Give each xdist worker its own Redis database so brokers never cross."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    first = int(os.environ.get("SURGE_TEST_REDIS_DB_BASE", "1"))
    index = first + (int(worker[2:]) if worker.startswith("gw") else 0)
    base = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0").rsplit("/", 1)[0]
    url = f"{base}/{index}"
    os.environ["REDIS_URL"] = url
    os.environ["CELERY_BROKER_URL"] = url
    from django.conf import settings

    settings.REDIS_URL = url
    settings.CELERY_BROKER_URL = url
    from config.celery import app

    app.conf.broker_url = url


@pytest.fixture(scope="session", autouse=True)
def _require_postgresql(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        if connection.vendor != "postgresql":
            pytest.exit(
                "The suite runs against real PostgreSQL: run `make test` "
                "(or set DATABASE_URL=postgres://...).",
                returncode=2,
            )


@pytest.fixture(autouse=True)
def _bin_ranges_seeded(request, django_db_blocker):
    """A transactional test flushes every table when it ends, the BIN ranges
    vault's migration 0002 seeded included: put them back (committed, as the
    migration left them) before a test that uses the database. Production's
    table is never flushed."""
    uses_db = request.node.get_closest_marker("django_db") is not None or {
        "db",
        "transactional_db",
    } & set(request.fixturenames)
    if uses_db:
        from vault.models import BinRange

        with django_db_blocker.unblock():
            if not BinRange.objects.exists():
                seed = importlib.import_module("vault.migrations.0002_bin_ranges")
                BinRange.objects.bulk_create(
                    BinRange(low=lo, high=hi, brand=b, funding=f, country=c, note=n)
                    for lo, hi, b, f, c, n in seed.SEED
                )
    yield


@pytest.fixture(autouse=True)
def _fresh_key_cache():
    key_service.clear_cache()
    yield
    key_service.clear_cache()


@pytest.fixture
def merchant_and_key(db):
    merchant = MerchantFactory()
    _, secret = key_service.api_key_create(merchant=merchant)
    return merchant, secret


@pytest.fixture
def merchant(merchant_and_key):
    return merchant_and_key[0]


@pytest.fixture
def client_for():
    """An API client authenticated with the given secret key."""

    def make(secret: str) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        return client

    return make


@pytest.fixture
def api(merchant_and_key, client_for):
    return client_for(merchant_and_key[1])


@pytest.fixture
def token(merchant):
    return TokenFactory(merchant_id=merchant.id)
