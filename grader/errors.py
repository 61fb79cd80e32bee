"""Errors the service reports to its callers: an HTTP status, a short code and a plain detail."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """A refusal with a reason; the API renders it as `{"error": code, "detail": detail}` with `status`."""

    status = 400
    code = "bad_request"

    def __init__(self, detail: Any = None, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def to_dict(self) -> dict[str, Any]:
        """The JSON error body."""
        return {"error": self.code, "detail": self.detail}


class Unauthorized(ServiceError):
    """No valid credentials."""

    status, code = 401, "unauthorized"


class Forbidden(ServiceError):
    """Authenticated, but not allowed."""

    status, code = 403, "forbidden"


class NotFound(ServiceError):
    """No such thing (or not one the caller may know about)."""

    status, code = 404, "not_found"


class UploadRejected(ServiceError):
    """An upload that cannot be graded as sent (name, encoding, size, type)."""

    status, code = 422, "invalid_upload"


class Unavailable(ServiceError):
    """A dependency (broker, database) is down; try again later."""

    status, code = 503, "unavailable"
