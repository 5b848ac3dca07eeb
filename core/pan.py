"""Find and redact anything shaped like a card number (PAN).

Here in ``core``, below every app, because every layer needs it: the API's
error handler and serializers, the vault, payments' input checks and logging.

A candidate is 13-19 digits, contiguous or in groups separated by single
spaces or dashes, that passes Luhn. Windows start and end on group boundaries,
so ``qty 3 4242 4242 4242 4242`` loses the card but keeps the ``3``; a longer
unbroken digit run (a 24-digit reference) is not a card and is left alone.
A window starting with 0 is not a PAN (no issuer uses major industry
identifier 0), which spares zero-padded ids. Short numbers (amounts, counts)
are never touched; a 13-19 digit number that passes Luhn by chance (1 in 10)
is redacted: that is the price.

Two layers: ``install_record_factory()`` (run by ``CoreConfig.ready``) redacts
every record as it is created, so every handler (console, caplog, Celery,
Sentry) sees the clean record; ``RedactPANFilter`` does the same on a handler,
for processes that configure logging before Django.
"""

import logging
import re


def luhn_ok(digits: str) -> bool:
    """Luhn (mod 10) check of an ASCII digit string."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


REDACTED = "[REDACTED PAN]"
# Maximal runs of digit groups joined by one space or dash.
_RUN = re.compile(r"(?<![0-9])[0-9]+(?:[ -][0-9]+)*(?![0-9])")
_GROUP = re.compile(r"[0-9]+")
# Thirteen digits with at most one space or dash between neighbours: a run
# holding fewer cannot hold a card number, so text without this match (nearly
# every id, description and log line) skips the per-run work, which intake
# would otherwise do for every token like ``tok_06H023K6NJSW4P0T2K3P1GBQDW``.
_THIRTEEN = re.compile(r"[0-9](?:[ -]?[0-9]){12}")
_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


def _redact_run(run: str) -> str:
    groups = [(m.start(), m.end()) for m in _GROUP.finditer(run)]
    if sum(e - s for s, e in groups) < 13:
        return run
    spans: list[tuple[int, int]] = []
    a = 0
    while a < len(groups):
        digits, best = "", None
        for b in range(a, len(groups)):
            digits += run[groups[b][0] : groups[b][1]]
            if len(digits) > 19:
                break
            if len(digits) >= 13 and digits[0] != "0" and luhn_ok(digits):
                best = b
        if best is None:
            a += 1
        else:
            spans.append((groups[a][0], groups[best][1]))
            a = best + 1
    for start, end in reversed(spans):
        run = run[:start] + REDACTED + run[end:]
    return run


def redact_pans(text: str) -> str:
    """``text`` with every card-number-shaped run replaced by ``[REDACTED PAN]``."""
    if _THIRTEEN.search(text) is None:
        return text
    return _RUN.sub(lambda m: _redact_run(m.group(0)), text)


def contains_pan(text: str) -> bool:
    """True if ``text`` holds something shaped like a card number.

    For input fields that must never carry one (descriptions, metadata).
    """
    return redact_pans(text) != text


_formatter = logging.Formatter()


def redact_values(value):
    """``value`` with every string in it redacted (dicts and lists walked)."""
    if isinstance(value, str):
        return redact_pans(value)
    if isinstance(value, dict):
        return {k: redact_values(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_values(v) for v in value]
    return value


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Render the message once, redact it, and freeze it into ``msg``.

    The traceback is rendered and redacted into ``exc_text`` and ``exc_info`` is
    dropped, so no handler can re-render an exception message that holds a
    number. String ``extra=`` values are redacted too (by the handler filter:
    they are attached after the record factory runs). Idempotent.
    """
    if isinstance(record.msg, dict) and not record.args:
        # A structlog event on its way to its formatter (core.logs): redact
        # its values and keep it an event.
        record.msg = redact_values(record.msg)
    else:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not drop the record
            message = f"{record.msg} {record.args!r}"
        record.msg = redact_pans(message)
        record.args = None
    if record.exc_info:
        if record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = _formatter.formatException(record.exc_info)
        record.exc_info = None
    if record.exc_text:
        record.exc_text = redact_pans(record.exc_text)
    if record.stack_info:
        record.stack_info = redact_pans(record.stack_info)
    for name, value in list(record.__dict__.items()):
        if name not in _STANDARD_ATTRS and isinstance(value, str):
            setattr(record, name, redact_pans(value))
    return record


class RedactPANFilter(logging.Filter):
    """Handler filter: redact the record in place, never drop it."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


_installed = False


def install_record_factory() -> None:
    """Wrap the current LogRecord factory so every record is born redacted."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs) -> logging.LogRecord:
        return redact_record(previous(*args, **kwargs))

    logging.setLogRecordFactory(factory)
    _installed = True
