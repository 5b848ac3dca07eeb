"""The API's one body parser: JSON, bounded in size and depth, valid Unicode."""

import json
import re
from decimal import Decimal

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

from core.error_codes import ErrorCode
from core.errors import InvalidRequest, PayloadTooLarge

# No body Surge takes nests deeper than 4 (a batch's item's metadata); this
# leaves room and stays far below the interpreter's recursion limit, which
# ``json`` (and every recursive walk after it) would otherwise meet first.
MAX_JSON_DEPTH = 32

# A \u escape of a surrogate; JSON text reaches one no other way (undecodable
# bytes are refused as UTF-8 first).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"Request body is larger than {limit} bytes.")


def _too_deep() -> InvalidRequest:
    return InvalidRequest(
        f"Request body nests arrays and objects deeper than {MAX_JSON_DEPTH} levels.",
        code=ErrorCode.JSON_TOO_DEEP,
    )


def _walk(value: object):
    """Every (container or string, depth) in ``value``, without recursion."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        yield item, depth
        if type(item) is dict:
            stack.extend((k, depth) for k in item)
            stack.extend((v, depth + 1) for v in item.values())
        elif type(item) is list:
            stack.extend((v, depth + 1) for v in item)


def _lone_surrogate(value: object) -> bool:
    for item, _ in _walk(value):
        if type(item) is str:
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def _depth(value: object) -> int:
    containers = (d for item, d in _walk(value) if type(item) in (dict, list))
    return max(containers, default=0)


class StrictJSONParser(BaseParser):
    """JSON with a size and a depth limit, and only strings PostgreSQL and
    UTF-8 can hold; decimals parse as Decimal so no float is ever made.

    The size is checked on the declared Content-Length before a byte is read,
    and again on what arrives (a chunked body declares none). The checks that
    walk the parsed body run only when a cheap scan of the bytes says they
    could fail, so the plain single payment pays for neither.
    """

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        request = parser_context["request"]
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > limit:
            raise _too_large(limit)
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise _too_large(limit)
        try:
            data = json.loads(
                raw.decode("utf-8"),
                parse_float=Decimal,
                parse_constant=_reject_constant,
            )
        except RecursionError:
            raise _too_deep() from None
        except (ValueError, UnicodeDecodeError):
            raise ParseError("Request body is not valid JSON.") from None
        openers = raw.count(b"[") + raw.count(b"{")
        if openers > MAX_JSON_DEPTH and _depth(data) > MAX_JSON_DEPTH:
            raise _too_deep()
        if _SURROGATE_ESCAPE.search(raw) and _lone_surrogate(data):
            raise InvalidRequest(
                "Request body is not valid JSON text: a string holds an unpaired "
                "surrogate (\\ud800-\\udfff), which is no Unicode character.",
                code=ErrorCode.INVALID_JSON,
            )
        return data
