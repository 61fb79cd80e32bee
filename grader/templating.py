"""What every page's templates may use, registered app-wide: number, time and status filters, and globals.

Student, instructor, login and LMS pages all render through these, so they belong to the app (`init_app`), not to
one blueprint: a page must not depend on the instructor dashboard being registered to format a score.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Flask, current_app
from markupsafe import Markup, escape

from grader.auth.identity import current_user
from grader.auth.permissions import teaches_anything
from grader.models import Assignment

STATUS_WORDS = {
    "queued": "Waiting in the queue",
    "running": "Being graded",
    "graded": "Graded",
    "error": "Could not be graded",
}
TEST_WORDS = {
    "passed": "passed",
    "failed": "failed",
    "error": "error",
    "timeout": "timed out",
    "memory": "out of memory",
    "crashed": "crashed",
    "hidden": "hidden",
}


# --- filters -------------------------------------------------------------------------------------------------
def fmt(value: float | None) -> str:
    """A score as people write it: 20 not 20.0, 12.5 not 12.500001; "—" for no score."""
    if value is None:
        return "—"
    rounded = round(float(value), 2)
    return str(int(rounded)) if rounded == int(rounded) else f"{rounded:g}"


def duration(seconds: float | None) -> str:
    """Seconds as people say them: "45 s", "3 min", "2 h 5 min"; "—" when unknown."""
    if seconds is None:
        return "—"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def seconds_filter(seconds: float | None) -> str:
    """A short run time with one decimal: "5.8 s"."""
    return "—" if seconds is None else f"{seconds:.1f} s"


def when_filter(value: datetime | str | None) -> Markup:
    """A UTC time in a <time> element: machine-readable attribute, short readable text."""
    if value is None:
        return Markup("—")
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return Markup('<time datetime="{}">{}</time>').format(
        value.isoformat(timespec="seconds"), value.strftime("%Y-%m-%d %H:%M UTC")
    )


def status_words(status: str) -> str:
    """A submission status as a sentence fragment people understand."""
    return STATUS_WORDS.get(status, status)


def test_words(status: str) -> str:
    """A test status in plain words."""
    return TEST_WORDS.get(status, status)


def badge(status: str, words: str | None = None) -> Markup:
    """A status badge: text always (colour is never the only signal), colour by class."""
    text = words if words is not None else TEST_WORDS.get(status, STATUS_WORDS.get(status, status))
    return Markup('<span class="badge badge-{}">{}</span>').format(escape(status), text)


def human_bytes(size: int | None) -> str:
    """1048576 → "1 MB", 2300 → "2.2 KB", 17 → "17 bytes"."""
    if size is None:
        return "—"
    if size < 1024:
        return f"{size} bytes"
    value, unit = size / 1024, "KB"
    if value >= 1024:
        value, unit = value / 1024, "MB"
    if value >= 1024:
        value, unit = value / 1024, "GB"
    return f"{value:.1f}".removesuffix(".0") + f" {unit}"


# --- globals -------------------------------------------------------------------------------------------------
def is_instructor() -> bool:
    """Whether the logged-in user teaches anything (the header then links to the dashboard)."""
    user = current_user()
    return user is not None and teaches_anything(user)


def upload_rules(assignment: Assignment) -> dict[str, Any]:
    """The server's upload rules, for the page's text and its client-side checks (data-* attributes)."""
    limit = int(current_app.config["GRADER_MAX_UPLOAD_BYTES"])
    return {"files": list(assignment.files), "max_bytes": limit, "max_human": human_bytes(limit)}


FILTERS = {
    "score": fmt,
    "duration": duration,
    "seconds": seconds_filter,
    "when": when_filter,
    "status_words": status_words,
    "test_words": test_words,
    "badge": badge,
    "bytes": human_bytes,
}
GLOBALS = {
    "current_user": current_user,
    "is_instructor": is_instructor,
    "upload_rules": upload_rules,
}


def init_app(app: Flask) -> None:
    """Make the filters and globals available to every template of `app`."""
    app.jinja_env.filters.update(FILTERS)
    app.jinja_env.globals.update(GLOBALS)
