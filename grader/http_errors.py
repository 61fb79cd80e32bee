"""Turn refusals into responses: JSON `{"error", "detail"}` for the API and /healthz, a page elsewhere."""

from __future__ import annotations

from flask import Flask, Response, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from grader.errors import ServiceError

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


def wants_json() -> bool:
    """API and health paths always answer JSON."""
    return request.path.startswith(("/api/", "/healthz"))


def _render(status: int, code: str, detail: object) -> tuple[Response | str, int]:
    if wants_json():
        return jsonify(error=code, detail=detail), status
    return render_template("error.html", status=status, code=code, detail=detail), status


def register(app: Flask) -> None:
    """Install the error handlers on `app`."""

    @app.errorhandler(ServiceError)
    def service_error(exc: ServiceError) -> tuple[Response | str, int]:
        return _render(exc.status, exc.code, exc.detail)

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
        return _render(status, _CODES.get(status, "error"), exc.description)
