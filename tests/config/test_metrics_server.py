"""The scrape target of the processes without a web server (core/metrics_server.py,
started from config/celery.py and run_relay); served for real in
tests/ops/test_scrape_targets.py."""

import logging
import socket
import subprocess
import sys

from core.metrics_server import serve_metrics
from tests.stack import ROOT


def test_loading_the_celery_app_leaves_prometheus_client_unloaded():
    """prometheus_client chooses file-backed values when first imported, by
    PROMETHEUS_MULTIPROC_DIR, which settings set after ``config`` loads: an
    earlier import would make every counter in-memory, seen by no scrape."""
    code = "import sys, config; print('prometheus_client' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert result.stdout.strip() == "False"


def test_without_a_port_nothing_is_served():
    assert serve_metrics(None) is None
    assert serve_metrics(0) is None


def test_a_port_in_use_is_logged_and_the_process_goes_on(caplog):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with caplog.at_level(logging.ERROR, logger="core.metrics_server"):
            assert serve_metrics(port, addr="127.0.0.1") is None
    assert f"cannot serve on 127.0.0.1:{port}" in caplog.text
