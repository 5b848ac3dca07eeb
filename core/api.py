"""The one DRF exception handler (every error becomes ``{"error": {...}}``),
Django's error views for the API's paths (the same object, where no DRF view
answers), and content negotiation for views that speak only JSON."""

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, JsonResponse
from django.views import defaults
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
            413,
            "invalid_request_error",
            ErrorCode.BODY_TOO_LARGE,
            f"Request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} "
            "bytes.",
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


# --- Django's error views (``handler404`` ... in config/urls.py) ---------------
# They answer what no DRF view does: a path that matches no route (an id with
# characters no id has, ``core.converters``), and a crash. On the API's paths
# they answer with the error object too; the admin (BROWSER_PATHS) keeps
# Django's pages.


def _is_browser(request) -> bool:
    return request.path.startswith(tuple(settings.BROWSER_PATHS))


def _error(status: int, type_: str, code: str, message: str) -> JsonResponse:
    body = {"type": type_, "code": code, "message": message, "param": None}
    return JsonResponse({"error": body}, status=status)


def not_found(request, exception=None):
    if _is_browser(request):
        return defaults.page_not_found(request, exception)
    return _error(
        404, "invalid_request_error", ErrorCode.RESOURCE_MISSING, "No such object."
    )


def bad_request(request, exception=None):
    if isinstance(exception, RequestDataTooBig) and not _is_browser(request):
        return _error(
            413,
            "invalid_request_error",
            ErrorCode.BODY_TOO_LARGE,
            f"Request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} "
            "bytes.",
        )
    if _is_browser(request):
        return defaults.bad_request(request, exception)
    return _error(
        400, "invalid_request_error", ErrorCode.INVALID_REQUEST, "Bad request."
    )


def server_error(request):
    if _is_browser(request):
        return defaults.server_error(request)
    return _error(
        500,
        "api_error",
        ErrorCode.API_ERROR,
        "Something went wrong on "
        "Surge's side; it is logged. Retry with the same Idempotency-Key.",
    )
