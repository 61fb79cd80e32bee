"""Turn refusals into responses: JSON `{"error", "detail"}` for the API and /healthz, a page elsewhere."""

from __future__ import annotations

import logging
import math

from flask import Flask, Response, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException, InternalServerError

from grader.database import db
from grader.errors import (
    Conflict,
    CoolingDown,
    Forbidden,
    KeyReused,
    NotFound,
    ServiceError,
    TooLarge,
    Unauthorized,
    Unavailable,
    UnsupportedMedia,
    UploadRefused,
    UploadRejected,
)
from grader.models.types import utcnow

log = logging.getLogger(__name__)

# What each kind of service refusal is to a web client. A kind not listed here (a plain ServiceError) is a 400;
# a subclass takes its nearest listed ancestor's status (TooLarge is an UploadRejected, but 413).
STATUS: dict[type[ServiceError], int] = {
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    TooLarge: 413,
    UnsupportedMedia: 415,
    UploadRejected: 422,
    KeyReused: 422,
    UploadRefused: 403,
    CoolingDown: 429,
    Unavailable: 503,
}

# Short codes for HTTP errors raised by Flask/Werkzeug/extensions rather than by our services.
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def status_of(exc: ServiceError) -> int:
    """The HTTP status a service refusal answers with."""
    return next((STATUS[kind] for kind in type(exc).__mro__ if kind in STATUS), 400)


def wants_json() -> bool:
    """API and health paths always answer JSON."""
    return request.path.startswith(("/api/", "/healthz"))


def _render(status: int, code: str, detail: object) -> tuple[Response | str, int]:
    # A failed statement leaves the session's transaction aborted; the page (which looks up who is signed
    # in) must not trip over it, so start clean first.
    try:
        db.session.rollback()
    except Exception:  # the database itself is gone: the page copes without a user
        log.warning("could not roll back the session before rendering an error")
    if wants_json():
        return jsonify(error=code, detail=detail), status
    try:
        return render_template("error.html", status=status, code=code, detail=detail), status
    except DBAPIError:
        db.session.rollback()
        return Response(f"{status} {code}: {detail}\n", status=status, mimetype="text/plain"), status


def register(app: Flask) -> None:
    """Install the error handlers on `app`."""

    @app.errorhandler(ServiceError)
    def service_error(exc: ServiceError) -> Response:
        status = status_of(exc)
        response = app.make_response(_render(status, exc.code, exc.detail))
        retry_at = getattr(exc, "retry_at", None)
        if retry_at is not None and status in (429, 503):
            # A client (or a student's script) learns when to come back without parsing the detail (RFC 9110
            # §10.2.3): whole seconds, rounded up so that a retry on the dot is never still too early.
            since = getattr(exc, "judged_at", None) or utcnow()
            response.headers["Retry-After"] = str(max(1, math.ceil((retry_at - since).total_seconds())))
        return response

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError) -> tuple[Response | str, int]:
        return _render(400, "csrf_failed", exc.description)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response | str, int] | HTTPException:
        status = exc.code or 500
        if status == 413:
            limit = app.config["GRADER_MAX_UPLOAD_BYTES"]
            return _render(413, "too_large", f"the upload is larger than the limit of {limit} bytes")
        if status == 429:
            return _render(429, "rate_limited", f"too many requests: the limit is {exc.description}")
        if isinstance(exc, InternalServerError) and exc.original_exception is not None:
            return unexpected(exc.original_exception)
        body, code = _render(status, _CODES.get(status, "error"), exc.description)
        response = app.make_response((body, code))
        if status == 405:
            # The client must learn which methods the URL does take (RFC 9110 §15.5.6).
            allow = dict(exc.get_headers()).get("Allow")
            if allow:
                response.headers["Allow"] = allow
        return response

    @app.errorhandler(DBAPIError)
    def database_error(exc: DBAPIError) -> tuple[Response | str, int]:
        log.error("database error: %s", str(exc).splitlines()[0])
        return _render(503, "unavailable", "the database is unavailable; please try again shortly")

    @app.errorhandler(Exception)
    def unexpected(exc: BaseException) -> tuple[Response | str, int]:
        if isinstance(exc, DBAPIError):
            return database_error(exc)
        log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
        return _render(500, "internal_error", "something went wrong on our side; it has been logged")
