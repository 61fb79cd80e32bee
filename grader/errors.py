"""Errors the service reports to its callers: a kind (the class), a short code and a plain detail.

No HTTP here: the services run in CLI commands and Celery tasks too. What each kind means to a web client (its
status code) is decided in one place, grader/http_errors.py (`status_of`); the CLI prints the detail instead.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


class ServiceError(Exception):
    """A refusal with a reason: the request itself is wrong. The API renders it as `{"error": code, "detail"}`."""

    code = "bad_request"

    def __init__(self, detail: Any = None, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, Any]:
        """The JSON error body."""
        return {"error": self.code, "detail": self.detail}


class Unauthorized(ServiceError):
    """No valid credentials."""

    code = "unauthorized"


class Forbidden(ServiceError):
    """Authenticated, but not allowed."""

    code = "forbidden"


class NotFound(ServiceError):
    """No such thing (or not one the caller may know about)."""

    code = "not_found"


class Conflict(ServiceError):
    """The thing exists already, or its current state does not allow what was asked."""

    code = "conflict"


class UploadRejected(ServiceError):
    """An upload that cannot be graded as sent (name, encoding, size, type)."""

    code = "invalid_upload"


class TooLarge(UploadRejected):
    """An upload over GRADER_MAX_UPLOAD_BYTES."""

    code = "too_large"


class KeyReused(ServiceError):
    """An idempotency key sent again with a different upload: the key stands for the upload it first came with."""

    code = "idempotency_key_reused"


class UnsupportedMedia(ServiceError):
    """A request body of a kind the endpoint does not read (an upload that is not multipart/form-data)."""

    code = "unsupported_media_type"


class Unavailable(ServiceError):
    """A dependency (broker, database) is down; try again later."""

    code = "unavailable"


class UploadRefused(ServiceError):
    """The course policy refuses an upload now (too early, closed, limit reached); nothing is stored.

    `retry_at` is when the same upload would be accepted, where the policy knows (a cooldown's end, the release),
    and `judged_at` the moment the policy judged it, by the same clock (the database's): the wait between them is
    what a client is told, whatever the clock of the web host that answers.
    """

    code = "upload_refused"

    def __init__(self, detail: Any = None, *, code: str | None = None, retry_at: datetime | None = None,
                 judged_at: datetime | None = None) -> None:
        super().__init__(detail, code=code)
        self.retry_at, self.judged_at = retry_at, judged_at


class CoolingDown(UploadRefused):
    """The policy's cooldown between uploads has not passed yet: the same upload later will be accepted."""

    code = "cooling_down"
