"""OpenTelemetry, on with the standard OTEL_* variables: one payment's spans
link its request to its stages, across the web, the relay and a real worker.

The web and the relay run in a child process that exports to OpenTelemetry's
in-memory exporter (tracing is process-wide, so the test process itself
stays untraced); the worker is a real Celery worker exporting with
``OTEL_TRACES_EXPORTER=console`` into its log.
"""

import json
import subprocess
import sys

import pytest
import redis
from django.conf import settings

from core.tracing import wanted
from payments.models import Payment
from tests.stack import ROOT, Stack, wait_until

WEB_AND_RELAY = r"""
import json, django
django.setup()
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from core import tracing
exporter = InMemorySpanExporter()
assert tracing.configure(SimpleSpanProcessor(exporter))
from payments.services.keys import merchant_create
from payments.services.relay import relay_once
from tests.apiclient import APIClient
from tests.factories import card_token
merchant, secret = merchant_create(name="Traced", primary_gateway="sandbox")
token = card_token(merchant)
api = APIClient()
api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
resp = api.post("/v1/payments", data={"amount": 700, "currency": "usd",
                "source": token.id}, format="json", HTTP_IDEMPOTENCY_KEY="t1")
assert resp.status_code == 202, resp.content
assert relay_once() == 1
spans = [
    {"name": s.name, "trace": s.context.trace_id, "span": s.context.span_id,
     "parent": s.parent.span_id if s.parent else None,
     "links": [link.context.span_id for link in s.links]}
    for s in exporter.get_finished_spans()
]
print(json.dumps({"payment": resp.json()["id"], "spans": spans}))
"""


def _console_spans(text: str) -> list[dict]:
    """The spans a ConsoleSpanExporter wrote among a log's other lines."""
    decoder, spans, i = json.JSONDecoder(), [], 0
    while (i := text.find("{\n", i)) != -1:
        try:
            obj, end = decoder.raw_decode(text, i)
        except ValueError:
            i += 1
            continue
        if isinstance(obj, dict) and "context" in obj and "name" in obj:
            spans.append(obj)
        i = end
    return spans


def _id(hex_id: str | None) -> int | None:
    return int(hex_id, 16) if hex_id else None


def test_tracing_is_off_unless_the_environment_asks():
    assert not wanted({})
    assert not wanted({"OTEL_TRACES_EXPORTER": "none"})
    assert wanted({"OTEL_TRACES_EXPORTER": "console"})
    assert wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert not wanted({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"})


@pytest.mark.django_db(transaction=True)
def test_one_payments_spans_link_the_request_to_its_stages(tmp_path):
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    stack = Stack(tmp_path, OTEL_TRACES_EXPORTER="console",
                  OTEL_SERVICE_NAME="surge-worker")  # fmt: skip
    try:
        stack.worker(concurrency=2)
        done = subprocess.run(
            [sys.executable, "-c", WEB_AND_RELAY],
            cwd=ROOT, env={**stack.env, "PYTHONPATH": str(ROOT),
                           "DJANGO_SETTINGS_MODULE": "config.settings"},
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(done.stdout.strip().splitlines()[-1])
        payment_id = result["payment"]
        wait_until(
            lambda: Payment.objects.get(pk=payment_id).status == "settled",
            timeout=60,
        )

        def worker_spans() -> list[dict]:
            return _console_spans(stack.logs["worker"].read_text())

        wait_until(
            lambda: any(s["name"] == "run/payments.settle" for s in worker_spans()),
            timeout=30,
        )
    finally:
        stack.stop_all()
    web = result["spans"]
    request = next(s for s in web if s["name"].startswith("POST"))
    publish = next(s for s in web if s["name"] == "relay.publish validate")
    # The relay's publish links to the request that accepted the payment.
    assert request["span"] in publish["links"]
    assert publish["trace"] != request["trace"]
    # Celery carried the publish span's context to the worker: every stage
    # of this payment runs in the publish span's trace, one after another.
    spans = worker_spans()
    # Parents across both processes: the relay's producer span is the parent
    # of the worker's first run.
    parent_of = {_id(s["context"]["span_id"]): _id(s.get("parent_id")) for s in spans}
    parent_of |= {s["span"]: s["parent"] for s in web}
    runs = {s["name"]: s for s in spans if s["name"].startswith("run/payments.")}
    assert {_id(s["context"]["trace_id"]) for s in runs.values()} == {publish["trace"]}
    assert {"run/payments.validate", "run/payments.execute",
            "run/payments.settle"} <= set(runs)  # fmt: skip

    def ancestors(span: dict) -> set[int]:
        out, current = set(), _id(span["context"]["span_id"])
        while (current := parent_of.get(current)) is not None:
            out.add(current)
        return out

    assert publish["span"] in ancestors(runs["run/payments.validate"])
    validate = _id(runs["run/payments.validate"]["context"]["span_id"])
    execute = _id(runs["run/payments.execute"]["context"]["span_id"])
    assert validate in ancestors(runs["run/payments.execute"])
    assert execute in ancestors(runs["run/payments.settle"])
