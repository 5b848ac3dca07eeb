"""With an amqp:// broker, every queue Surge uses is a quorum queue, publishes
wait for confirms and the prefetch is per consumer (quorum queues refuse global
QoS). `make drill BROKER=rabbitmq` runs them on a real node under faults."""

import json
import os
import subprocess
import sys

from tests.stack import ROOT

PROBE = """
import json, django
django.setup()
from django.conf import settings
from celery.utils.quorum_queues import detect_quorum_queues
from config.celery import app
from payments.workflow import STAGE_QUEUES
queues = app.amqp.queues
print(json.dumps({
    "names": sorted(queues),
    "types": {n: (queues[n].queue_arguments or {}).get("x-queue-type") for n in queues},
    "routes": {n: [queues[n].exchange.name, queues[n].routing_key] for n in queues},
    "stages": list(STAGE_QUEUES),
    "quorum": detect_quorum_queues(app, "amqp")[0],
    "options": settings.CELERY_BROKER_TRANSPORT_OPTIONS,
}))
"""


def _probe(tmp_path, broker: str) -> dict:
    env = {
        **os.environ,
        "CELERY_BROKER_URL": broker,
        "SURGE_VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=120, check=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_an_amqp_broker_gets_quorum_queues_and_publisher_confirms(tmp_path):
    seen = _probe(tmp_path, "amqp://guest:guest@127.0.0.1:5672//")
    assert set(seen["names"]) == {"default", *seen["stages"]}
    assert set(seen["types"].values()) == {"quorum"}
    assert all(
        exchange == key == name for name, (exchange, key) in seen["routes"].items()
    )
    assert seen["quorum"]  # so Celery's worker sets the prefetch per consumer
    assert seen["options"] == {"confirm_publish": True}


def test_a_redis_broker_keeps_classic_lists(tmp_path):
    seen = _probe(tmp_path, "redis://127.0.0.1:6379/4")
    assert not seen["quorum"]
    assert "confirm_publish" not in seen["options"]
