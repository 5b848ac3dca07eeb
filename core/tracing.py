"""Tracing with OpenTelemetry, for Django, Celery and psycopg: off unless the
standard ``OTEL_*`` variables ask for it (``OTEL_TRACES_EXPORTER=otlp`` or
``console``, or an ``OTEL_EXPORTER_OTLP_*ENDPOINT``; ``OTEL_SDK_DISABLED=true``
wins). The SDK reads the rest itself (``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, the exporter's endpoint and headers). With no
SDK configured, what the apps call here is a cheap no-op: the hot path pays
nothing.

A payment's request and its stages are not one trace: the relay carries many
requests' payments in one task. The accepted event keeps its request's
``traceparent``; the relay's publish span links to each one it carries, and
the stages' spans are that span's children (Celery passes the context in the
task's headers), stage after stage.
"""

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from django.conf import settings
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.instrumentation.django import DjangoInstrumentor
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanProcessor,
)
from opentelemetry.trace import Link

_tracer = trace.get_tracer("surge")
# A publish span links to at most this many requests (OpenTelemetry's default
# span limit is 128 links; the rest would be dropped anyway).
MAX_LINKS = 128


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, or None when not tracing."""
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


@contextmanager
def span_linked_to(name: str, traceparents: Iterable[str | None]) -> Iterator[None]:
    """A span (``name``) linked to the spans the ``traceparents`` name: work
    done for many requests at once (the relay's publish) points back to each."""
    links = []
    for traceparent in traceparents:
        if traceparent and len(links) < MAX_LINKS:
            context = propagate.extract({"traceparent": traceparent})
            span_context = trace.get_current_span(context).get_span_context()
            if span_context.is_valid:
                links.append(Link(span_context))
    with _tracer.start_as_current_span(name, links=links):
        yield


_DJANGO_MIDDLEWARE = (
    "opentelemetry.instrumentation.django.middleware.otel_middleware._DjangoMiddleware"
)
_configured = False


def wanted(environ=os.environ) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter and exporter != "none":
        return True
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def _exporter(environ=os.environ) -> SpanExporter:
    name = environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    if name == "console":
        return ConsoleSpanExporter()
    if name == "otlp":
        # deferred: the OTLP exporter loads protobuf; only a process that
        # exports with it pays for that.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter,
        )

        return OTLPSpanExporter()
    raise ValueError(f"OTEL_TRACES_EXPORTER={name!r}: Surge knows otlp and console")


def configure(processor: SpanProcessor | None = None) -> bool:
    """Trace this process if the environment asks (or a test gives a span
    processor); True if tracing is on. Once per process: the SDK's batch
    processor restarts its thread in a forked child by itself."""
    global _configured
    if _configured:
        return True
    if processor is None:
        if not wanted():
            return False
        processor = BatchSpanProcessor(_exporter())
    provider = TracerProvider(resource=Resource.create())
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    DjangoInstrumentor().instrument()
    _api_middleware_traced()
    PsycopgInstrumentor().instrument()
    CeleryInstrumentor().instrument()
    _configured = True
    return True


def _api_middleware_traced() -> None:
    """The API runs on its own short middleware stack (core/handlers.py);
    Django's instrumentor only knows ``MIDDLEWARE``."""
    if _DJANGO_MIDDLEWARE not in settings.API_MIDDLEWARE:
        settings.API_MIDDLEWARE = [_DJANGO_MIDDLEWARE, *settings.API_MIDDLEWARE]


def is_on() -> bool:
    """Whether this process traces (``configure`` turned it on)."""
    return _configured
