"""Template filters shared by the instructor and student pages (registered app-wide by the blueprint)."""

from __future__ import annotations

from datetime import UTC, datetime

from markupsafe import Markup, escape

from grader.dashboard import bp
from grader.dashboard.charts import fmt
from grader.dashboard.queue import duration

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


@bp.app_template_filter("score")
def score_filter(value: float | None) -> str:
    """20.0 → "20", 12.499999 → "12.5", None → "—"."""
    return fmt(value)


@bp.app_template_filter("duration")
def duration_filter(seconds: float | None) -> str:
    """Seconds as "45 s" / "3 min" / "2 h 5 min"."""
    return duration(seconds)


@bp.app_template_filter("seconds")
def seconds_filter(seconds: float | None) -> str:
    """A short run time with one decimal: "5.8 s"."""
    return "—" if seconds is None else f"{seconds:.1f} s"


@bp.app_template_filter("when")
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


@bp.app_template_filter("status_words")
def status_words(status: str) -> str:
    """A submission status as a sentence fragment people understand."""
    return STATUS_WORDS.get(status, status)


@bp.app_template_filter("test_words")
def test_words(status: str) -> str:
    """A test status in plain words."""
    return TEST_WORDS.get(status, status)


@bp.app_template_filter("badge")
def badge(status: str, words: str | None = None) -> Markup:
    """A status badge: text always (colour is never the only signal), colour by class."""
    text = words if words is not None else TEST_WORDS.get(status, STATUS_WORDS.get(status, status))
    return Markup('<span class="badge badge-{}">{}</span>').format(escape(status), text)
