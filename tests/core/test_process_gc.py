"""Long-lived processes move what they loaded out of the cyclic collector's reach.

A full collection scanned every object Django and the apps had loaded (about
100,000): 45-150 ms with all of a web process's request threads stopped,
under the steady benchmark. Frozen, they are never scanned again.
"""

import subprocess
import sys

from tests.stack import ROOT


def _frozen_after(code: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport gc; print(gc.get_freeze_count())"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return int(out.stdout.split()[-1])


def test_nothing_is_frozen_by_merely_starting_python():
    assert _frozen_after("pass") == 0


def test_the_wsgi_application_freezes_what_it_loaded():
    assert _frozen_after("import config.wsgi") > 10_000


def test_a_celery_worker_process_freezes_once_it_is_ready():
    code = (
        "import django; from config.celery import app; app.loader.import_default_modules()\n"
        "from celery import signals\n"
        "import gc; before = gc.get_freeze_count()\n"
        "signals.worker_process_init.send(sender=None)\n"
        "assert before == 0, before"
    )
    assert _frozen_after(code) > 10_000
