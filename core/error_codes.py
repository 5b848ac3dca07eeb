"""Error codes shared by every app's API: the generic refusals (``core.api``)."""

from enum import StrEnum


class ErrorCode(StrEnum):
    """``error.code`` of a request refused for a reason no one app owns."""

    INVALID_REQUEST = "invalid_request"  # invalid input (400)
    PARAMETER_INVALID = "parameter_invalid"  # a field failed its rules (400)
    INVALID_JSON = "invalid_json"  # the body is not JSON (400)
    UNSUPPORTED_CONTENT_TYPE = "unsupported_content_type"  # not JSON (400)
    BODY_TOO_LARGE = "body_too_large"  # over MAX_REQUEST_BYTES (413)
    JSON_TOO_DEEP = "json_too_deep"  # arrays and objects nested too deep (400)
    INVALID_API_KEY = "invalid_api_key"  # missing, unknown or revoked key (401)
    PERMISSION_DENIED = "permission_denied"  # (403)
    RESOURCE_MISSING = "resource_missing"  # no such object, or not yours (404)
    METHOD_NOT_ALLOWED = "method_not_allowed"  # (405)
    CONFLICT = "conflict"  # the object's state does not allow it (409)
    RATE_LIMITED = "rate_limited"  # too many requests (429)
    API_ERROR = "api_error"  # Surge's fault (5xx); never for bad input
