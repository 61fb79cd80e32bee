"""Logging for the web app, the worker and the CLI: one `dictConfig`, plain lines or JSON, one line per request.

`GRADER_LOG_FORMAT` is `plain` (default: `time level logger: message`) or `json` (one object a line, with the
record's structured fields: submission_id, run_id, method, path, status, ...). `GRADER_LOG_LEVEL` (default
INFO) applies to our loggers and the root, so module loggers' INFO lines (LTI refusals, retries) are kept.

Each HTTP request logs one line on `grader.request` with the caller and the submission it touched (the id in
its URL, or the one it created), and each grading run logs one line on `grader.services.grading` when it is
recorded: "my student's upload vanished" is answered by grepping for the student or the submission id.
"""

from __future__ import annotations

import json
import logging
import logging.config
import time
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, has_request_context, request

FORMATS = ("plain", "json")
# Structured fields a record may carry (`extra=`); JSON lines include those present.
FIELDS = ("submission_id", "run_id", "assignment", "user", "method", "path", "status", "duration_ms",
          "remote_addr", "score", "max_score", "outcome", "attempt")

request_log = logging.getLogger("grader.request")


class JSONFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the structured fields, any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def logging_config(fmt: str = "plain", level: str = "INFO") -> dict[str, Any]:
    """The `dictConfig` mapping: one stderr handler on the root logger, in `fmt`."""
    formatter: dict[str, Any] = (
        {"()": JSONFormatter}
        if fmt == "json"
        else {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    return {
        "version": 1,
        # Loggers created before this call (gunicorn's, Celery's, ours) keep working.
        "disable_existing_loggers": False,
        "formatters": {"grader": formatter},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "grader",
                                "stream": "ext://sys.stderr"}},
        "loggers": {"grader": {"level": level}, "worker": {"level": level}},
        "root": {"level": level, "handlers": ["stderr"]},
    }


def configure_logging(fmt: str = "plain", level: str = "INFO") -> None:
    """Install the configuration (idempotent: it replaces the root's handlers, never adds a second one)."""
    logging.config.dictConfig(logging_config(fmt, level))


def note_submission(submission_id: int) -> None:
    """Attach `submission_id` to this request's log line (for requests that create one)."""
    if has_request_context():
        g.log_submission_id = submission_id


def init_app(app: Flask) -> None:
    """Configure logging from the app's settings (not under TESTING: pytest owns logging there) and log requests."""
    if not app.testing:
        configure_logging(app.config["GRADER_LOG_FORMAT"], app.config["GRADER_LOG_LEVEL"])

    @app.before_request
    def _start_clock() -> None:
        g.log_started = time.perf_counter()

    @app.after_request
    def _log_request(response: Response) -> Response:
        if request.endpoint != "static":
            log_request(response)
        return response


def _on_queued(_app: Flask, submission_id: int, **_: Any) -> None:
    note_submission(submission_id)


def _subscribe() -> None:
    # Every upload path (API, web form, LMS webhook) sends submission_queued: one receiver covers them all.
    from grader.signals import submission_queued

    submission_queued.connect(_on_queued)


_subscribe()


def log_request(response: Response) -> None:
    """One line for this request: method, path, status, duration, caller, assignment and submission."""
    from grader.auth.identity import current_user

    started = g.get("log_started")
    duration_ms = round((time.perf_counter() - started) * 1000, 1) if started is not None else None
    view_args = request.view_args or {}
    submission_id = view_args.get("submission_id", g.get("log_submission_id"))
    try:
        user = current_user()
    except Exception:  # a broken database must not also lose the request's log line
        user = None
    fields = {
        "method": request.method,
        "path": request.path,
        "status": response.status_code,
        "duration_ms": duration_ms,
        "user": user.email if user is not None else None,
        "assignment": view_args.get("assignment_id"),
        "submission_id": submission_id,
        "remote_addr": request.remote_addr,
    }
    request_log.info(
        "%s %s %s %sms user=%s submission=%s",
        request.method, request.path, response.status_code, duration_ms,
        fields["user"] or "-", submission_id if submission_id is not None else "-",
        extra=fields,
    )
