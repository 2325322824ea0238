"""One error base class carrying its HTTP status, and the JSON error shape every response uses.

Shape: ``{"error": {"code": "...", "message": "...", "details": ...}}``.
"""

from __future__ import annotations

import math
from typing import Any


class NotiflowError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        details: Any = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code
        # Seconds a client should wait before trying again (sent as Retry-After, rounded up).
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.status_code == 401:
            headers["WWW-Authenticate"] = "Bearer"
        if self.retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        return headers

    def to_body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.details)


class Unauthorized(NotiflowError):
    status_code = 401
    code = "unauthenticated"


class Forbidden(NotiflowError):
    status_code = 403
    code = "forbidden"


class NotFound(NotiflowError):
    status_code = 404
    code = "not_found"


class Conflict(NotiflowError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(NotiflowError):
    status_code = 413
    code = "payload_too_large"


class InvalidInput(NotiflowError):
    status_code = 422
    code = "validation_failed"


class TooManyRequests(NotiflowError):
    """Throttled: answer 429 with ``retry_after`` seconds."""

    status_code = 429
    code = "too_many_requests"


class ServiceUnavailable(NotiflowError):
    """A dependency (the database, say) is down: 503 with ``retry_after`` seconds."""

    status_code = 503
    code = "service_unavailable"


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}
