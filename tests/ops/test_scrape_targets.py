"""Every process that counts is scraped where it counts, in the compose layout:
the web, a Celery worker, the relay and beat each with a metrics folder of its
own (PROMETHEUS_MULTIPROC_DIR), the three without a web server serving theirs
on SURGE_METRICS_PORT. Real processes, real payments, real HTTP on loopback."""

import os
import urllib.request
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from payments.models import Payment
from payments.services.keys import api_key_create
from tests.factories import MerchantFactory
from tests.payments.test_pipeline_workers import create_payments, tokenize
from tests.stack import CELERY, PYTHON, Stack, free_port, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def stack(transactional_db, tmp_path):
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    s = Stack(tmp_path)
    yield s
    s.stop_all()


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Prometheus text as {(name, labels): value}."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(url: str) -> dict[tuple[str, frozenset], float] | None:
    """A target's samples, or None while nothing answers there."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return samples(response.read().decode())
    except OSError:
        return None


SETTLED = (
    "surge_payments_completed_total",
    frozenset({"status": "settled", "reason": ""}.items()),
)
SETTLED_LATENCY = ("surge_accept_to_settled_seconds_count", frozenset())


def web_settled() -> float:
    """The settled count at this process's /metrics (the web's folder)."""
    return samples(Client().get("/metrics").content.decode()).get(SETTLED, 0.0)


def test_a_prefork_workers_counters_are_served_at_its_own_scrape_target(
    stack, client_for, tmp_path, monkeypatch
):
    merchant = MerchantFactory(primary_gateway="sandbox")
    _, secret = api_key_create(merchant=merchant)
    ids = create_payments(client_for(secret), tokenize(merchant, "4242424242424242"), 3)
    # The web's folder, as a container of its own has it: the suite's shared
    # folder takes other tests' workers' counters at the same time.
    web_folder = tmp_path / "web-metrics"
    web_folder.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(web_folder))
    web_before = web_settled()

    targets = {}
    for name in ("worker", "relay", "beat"):
        folder = tmp_path / f"{name}-metrics"
        folder.mkdir()
        targets[name] = (folder, free_port())
    common = {"SURGE_METRICS_ADDR": "127.0.0.1"}

    def env(name: str) -> dict[str, str]:
        folder, port = targets[name]
        return {
            **common,
            "PROMETHEUS_MULTIPROC_DIR": str(folder),
            "SURGE_METRICS_PORT": str(port),
        }

    # Prefork: the children run the tasks and write the counter files, the
    # parent serves them.
    worker = stack.start(
        "worker",
        [
            CELERY, "-A", "config", "worker", "-Q", "default,validate,execute,settle",
            "-P", "prefork", "-c", "2", "-n", f"metrics-{os.getpid()}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ],
        **env("worker"),
    )  # fmt: skip
    stack.start("relay", [PYTHON, "manage.py", "run_relay"], **env("relay"))
    stack.start(
        "beat",
        [CELERY, "-A", "config", "beat", "--schedule", str(tmp_path / "beat-sched")],
        **env("beat"),
    )

    def url(name: str) -> str:
        return f"http://127.0.0.1:{targets[name][1]}/metrics"

    try:
        wait_until(
            lambda: Payment.objects.filter(pk__in=ids, status="settled").count() == 3,
            timeout=90,
            interval=0.3,
        )
        worker_samples = wait_until(
            lambda: (s := scrape(url("worker"))) and s.get(SETTLED) == 3.0 and s,
            timeout=30,
        )
        assert worker_samples[SETTLED_LATENCY] == 3.0
        # The children wrote the counters; the parent, which ran no task,
        # served them.
        writers = {
            int(p.stem.rsplit("_", 1)[1])
            for p in Path(targets["worker"][0]).glob("counter_*.db")
        }
        assert writers and worker.pid not in writers
        # The relay and beat answer at theirs, over their own folders only.
        for name in ("relay", "beat"):
            served = wait_until(lambda n=name: scrape(url(n)), timeout=30)
            assert SETTLED not in served, name
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{stack.log_text()}") from None
    # The web's /metrics sums its own folder: the worker's settlements are not
    # there (Prometheus adds the targets up).
    assert web_settled() == web_before
