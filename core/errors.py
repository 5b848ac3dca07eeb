"""Base of every domain error; the API maps these to the error object.

Each app defines ``<app>/exceptions.py`` with leaf classes of ``SurgeError``.
"""

from core.error_codes import ErrorCode


class SurgeError(Exception):
    """A refusal the caller can act on. Never carries card data in ``message``."""

    status = 400
    type = "invalid_request_error"
    code = ErrorCode.INVALID_REQUEST

    def __init__(
        self, message: str, *, param: str | None = None, code: str | None = None
    ):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def as_dict(self) -> dict:
        return {
            "type": self.type,
            "code": self.code,
            "message": self.message,
            "param": self.param,
        }


class InvalidRequest(SurgeError):
    """Malformed or invalid input (400)."""


class PayloadTooLarge(SurgeError):
    """The request body is over ``MAX_REQUEST_BYTES`` (413)."""

    status = 413
    code = ErrorCode.BODY_TOO_LARGE


class NotFound(SurgeError):
    status = 404
    code = ErrorCode.RESOURCE_MISSING


class Conflict(SurgeError):
    status = 409
    code = ErrorCode.CONFLICT
