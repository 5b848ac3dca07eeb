"""The one DRF exception handler (every error becomes ``{"error": {...}}``), and
content negotiation for views that speak only JSON."""

import logging

from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions as drf
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.response import Response

from core.error_codes import ErrorCode
from core.errors import SurgeError
from core.pan import redact_pans

logger = logging.getLogger(__name__)


class SingleRendererNegotiation(DefaultContentNegotiation):
    """A view with one renderer (the API's JSON) answers with it, whatever the
    Accept header says, as most payment APIs do, instead of parsing that header
    on every request to reach the same answer or a 406.
    Views with several renderers (the OpenAPI schema) negotiate as usual."""

    def select_renderer(self, request, renderers, format_suffix=None):
        if len(renderers) == 1 and not format_suffix:
            return renderers[0], renderers[0].media_type
        return super().select_renderer(request, renderers, format_suffix)


def error_response(
    status: int,
    type_: str,
    code: str,
    message: str,
    param: str | None = None,
    headers: dict | None = None,
    extra: dict | None = None,
) -> Response:
    # Defence in depth: no error message ever carries a card number.
    body = {
        "type": type_,
        "code": code,
        "message": redact_pans(message),
        "param": param,
    }
    if extra:
        body.update(extra)
    return Response({"error": body}, status=status, headers=headers)


def _first_error(detail, prefix: str = "") -> tuple[str | None, str]:
    """Flatten DRF's nested validation detail to (param, message)."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = key if key != "non_field_errors" else None
            param = f"{prefix}[{name}]" if prefix and name else (name or prefix or None)
            p, msg = _first_error(value, param or "")
            return p or param, msg
    if isinstance(detail, list) and detail:
        return _first_error(detail[0], prefix)
    return (prefix or None), str(detail)


def exception_handler(exc, context):
    if isinstance(exc, SurgeError):
        return error_response(
            exc.status, exc.type, exc.code, exc.message, exc.param,
            extra=getattr(exc, "extra", None),
        )  # fmt: skip
    if isinstance(exc, Http404):
        return error_response(
            404, "invalid_request_error", ErrorCode.RESOURCE_MISSING, "No such object."
        )
    if isinstance(exc, RequestDataTooBig):
        return error_response(
            400,
            "invalid_request_error",
            ErrorCode.BODY_TOO_LARGE,
            "Request body too large.",
        )
    if isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
        return error_response(
            401,
            "authentication_error",
            ErrorCode.INVALID_API_KEY,
            str(exc.detail),
            headers={"WWW-Authenticate": 'Bearer realm="surge"'},
        )
    if isinstance(exc, drf.ParseError):
        return error_response(
            400,
            "invalid_request_error",
            ErrorCode.INVALID_JSON,
            "Request body is not valid JSON.",
        )
    if isinstance(exc, drf.UnsupportedMediaType):
        return error_response(
            400,
            "invalid_request_error",
            ErrorCode.UNSUPPORTED_CONTENT_TYPE,
            "Content-Type must be application/json.",
        )
    if isinstance(exc, drf.ValidationError):
        param, message = _first_error(exc.detail)
        return error_response(
            400, "invalid_request_error", ErrorCode.PARAMETER_INVALID, message, param
        )
    if isinstance(exc, drf.Throttled):
        wait = int(exc.wait or 1)
        return error_response(
            429,
            "rate_limit_error",
            ErrorCode.RATE_LIMITED,
            "Too many requests.",
            headers={"Retry-After": str(wait)},
        )
    if isinstance(exc, drf.MethodNotAllowed):
        return error_response(
            405, "invalid_request_error", ErrorCode.METHOD_NOT_ALLOWED, str(exc.detail)
        )
    if isinstance(exc, drf.NotFound):
        return error_response(
            404, "invalid_request_error", ErrorCode.RESOURCE_MISSING, str(exc.detail)
        )
    if isinstance(exc, drf.PermissionDenied):
        return error_response(
            403, "invalid_request_error", ErrorCode.PERMISSION_DENIED, str(exc.detail)
        )
    if isinstance(exc, drf.APIException):
        return error_response(
            exc.status_code, "api_error", ErrorCode.API_ERROR, str(exc.detail)
        )
    return None
