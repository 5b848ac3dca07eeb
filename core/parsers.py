import json
from decimal import Decimal

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

from core.error_codes import ErrorCode
from core.errors import InvalidRequest


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


class StrictJSONParser(BaseParser):
    """JSON with a size limit; decimals parse as Decimal so no float is ever made."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        request = parser_context["request"]
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > limit:
            raise InvalidRequest(
                f"Request body is larger than {limit} bytes.",
                code=ErrorCode.BODY_TOO_LARGE,
            )
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise InvalidRequest(
                f"Request body is larger than {limit} bytes.",
                code=ErrorCode.BODY_TOO_LARGE,
            )
        try:
            return json.loads(
                raw.decode("utf-8"),
                parse_float=Decimal,
                parse_constant=_reject_constant,
            )
        except (ValueError, UnicodeDecodeError):
            raise ParseError("Request body is not valid JSON.") from None
