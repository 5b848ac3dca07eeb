"""Structured logs: one JSON object a line, from every process, with the
context that ties a payment's path together (``request_id``, ``merchant_id``,
``payment_id``/``payment_ids``, the Celery ``task`` and ``stage``).

structlog renders every record, ours and the libraries' (Django, Celery)
alike, through the stdlib handler, so the PAN scrubber (``core.pan``: the
record factory and the handler filter) stays in front of every handler.
Context travels in contextvars: a request's middleware binds the request id,
authentication the merchant, a Celery task its name and id.
"""

import logging
import os
import re

import structlog

from core.pan import redact_values

# Processors every record goes through, structlog's own and foreign ones.
_SHARED: list = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.stdlib.ExtraAdder(),
]


def redact_event(logger, method_name, event_dict: dict) -> dict:
    """The scrubber again, on the event's values as the JSON will hold them
    (context and ``extra`` values included)."""
    return redact_values(event_dict)


def rendered_exception(logger, method_name, event_dict: dict) -> dict:
    """The traceback the scrubber rendered and redacted (``core.pan`` turns
    ``exc_info`` into ``exc_text`` so no handler can render it again)."""
    record = event_dict.get("_record")
    if record is not None and record.exc_text and "exception" not in event_dict:
        event_dict["exception"] = record.exc_text
    return event_dict


def formatter(fmt: str) -> dict:
    """The ``LOGGING`` formatter entry: ``json`` (one object a line) or
    ``console`` (for a person at a terminal)."""
    renderer = (
        structlog.dev.ConsoleRenderer(colors=False)
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    return {
        "()": structlog.stdlib.ProcessorFormatter,
        "foreign_pre_chain": [*_SHARED, rendered_exception],
        "processors": [
            rendered_exception,
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_event,
            renderer,
        ],
    }


def configure(level: str = "INFO") -> None:
    """structlog's loggers hand their events to the stdlib handlers.

    A call below ``level`` (the root logger's) returns at once: the filtering
    wrapper makes ``logger.info`` a no-op at WARNING, where a processor that
    drops the event would first have built it (every request logs one)."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_SHARED,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        cache_logger_on_first_use=True,
    )


get_logger = structlog.stdlib.get_logger
bind = structlog.contextvars.bind_contextvars
clear = structlog.contextvars.clear_contextvars

# A client's own request id is kept if it is a plain token; anything else is
# replaced (it would be a way to write into our logs).
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class RequestContextMiddleware:
    """Binds ``request_id`` (the client's ``X-Request-Id`` when it is a plain
    token, else a new one) for every log line of the request, and returns it
    as ``Request-Id``."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        # The context is cleared when each request ends (``finally``), so
        # a thread's next request starts without it.
        given = request.META.get("HTTP_X_REQUEST_ID", "")
        request_id = given if _REQUEST_ID.fullmatch(given) else os.urandom(16).hex()
        bind(request_id=request_id)
        try:
            response = self.get_response(request)
        finally:
            clear()
        response["Request-Id"] = request_id
        return response
