"""Helpers the student templates call (the routes live in grader/student; their pages are styled here).

Registered as template globals, so the result page can list a student's history without its route passing it.
"""

from __future__ import annotations

from typing import Any

from flask import current_app
from sqlalchemy import select

from grader.auth.identity import current_user
from grader.dashboard import bp
from grader.database import db
from grader.models import Assignment, Submission


@bp.app_template_global()
def submission_history(submission: Submission) -> list[Submission]:
    """The same student's submissions to the same assignment, newest first (the result page's history)."""
    return list(
        db.session.scalars(
            select(Submission)
            .where(Submission.user_id == submission.user_id)
            .where(Submission.assignment_id == submission.assignment_id)
            .order_by(Submission.created_at.desc(), Submission.id.desc())
        )
    )


@bp.app_template_global()
def my_submissions(assignment: Assignment) -> list[Submission]:
    """The logged-in user's submissions to `assignment`, newest first (shown under the upload form)."""
    user = current_user()
    if user is None:
        return []
    return list(
        db.session.scalars(
            select(Submission)
            .where(Submission.user_id == user.id, Submission.assignment_id == assignment.id)
            .order_by(Submission.created_at.desc(), Submission.id.desc())
        )
    )


@bp.app_template_global()
def upload_rules(assignment: Assignment) -> dict[str, Any]:
    """The server's upload rules, for the page's text and its client-side checks (data-* attributes)."""
    limit = int(current_app.config["GRADER_MAX_UPLOAD_BYTES"])
    return {"files": list(assignment.files), "max_bytes": limit, "max_human": human_bytes(limit)}


@bp.app_template_filter("bytes")
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
