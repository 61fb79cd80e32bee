"""Accept an upload, queue its grading, and describe a submission to the people allowed to see it."""

from __future__ import annotations

import logging
from typing import Any

from flask import current_app, url_for
from sqlalchemy import func, select

from grader.auth.permissions import require_member
from grader.errors import ServiceError, Unavailable, UploadRejected
from grader.extensions import db
from grader.models import Assignment, GradingRun, Submission, User
from grader.services.assignments import load_manifest
from grader.services.storage import store
from grader.signals import notify, submission_queued
from worker.engine.errors import UsageError
from worker.engine.grade import check_files
from worker.engine.result import for_student

log = logging.getLogger(__name__)

RESULT_FIELDS = ("score", "max_score", "message", "execution_time", "deliverables")


class TooLarge(ServiceError):
    """An uploaded file over GRADER_MAX_UPLOAD_BYTES."""

    status, code = 413, "too_large"


def check_upload(assignment: Assignment, name: str, data: bytes) -> None:
    """Raise TooLarge/UploadRejected unless `data` named `name` is a file this assignment can grade.

    Name, encoding and text checks are the engine's own (`check_files`), so the web never accepts a file
    the worker would refuse; the size limit is the service's (configurable) one.
    """
    limit = int(current_app.config["GRADER_MAX_UPLOAD_BYTES"])
    if len(data) > limit:
        raise TooLarge(f"{name} is {len(data)} bytes; the limit is {limit} bytes")
    if not data.strip():
        raise UploadRejected(f"{name} is empty", code="empty_file")
    try:
        check_files(load_manifest(assignment.slug), {name: data})
    except UsageError as exc:
        raise UploadRejected(str(exc)) from None


def submit(user: User, assignment: Assignment, name: str, data: bytes) -> Submission:
    """Store a checked upload, create its submission and first grading run, and queue the run.

    Every check happens before anything is written, and a failure to queue undoes the write, so a refused
    upload leaves nothing behind.
    """
    require_member(user, assignment.course)
    check_upload(assignment, name, data)
    sha256 = store().put(data)
    submission = Submission(user=user, assignment=assignment, sha256=sha256, original_name=name,
                            size=len(data))
    submission.runs.append(GradingRun(number=1, published=True, queue=assignment.queue))
    db.session.add(submission)
    db.session.commit()
    run = submission.runs[0]
    try:
        enqueue(run)
    except Exception as exc:
        log.exception("could not queue submission %s", submission.id)
        _discard(submission)
        reason = f"the grading queue is unavailable ({type(exc).__name__}); nothing was stored"
        raise Unavailable(reason) from exc
    notify(submission_queued, submission_id=submission.id, run_id=run.id)
    return submission


def enqueue(run: GradingRun) -> None:
    """Send the grading task for `run` to its queue (after the run is committed, so the worker finds it)."""
    from worker.tasks import grade_submission

    grade_submission.apply_async(args=[run.submission_id], kwargs={"run_id": run.id}, queue=run.queue)


def _discard(submission: Submission) -> None:
    sha256 = submission.sha256
    db.session.delete(submission)
    db.session.commit()
    still_used = db.session.scalar(select(func.count()).where(Submission.sha256 == sha256))
    if not still_used:
        store().delete(sha256)


def queue_position(run: GradingRun) -> int:
    """1-based place of a queued run in its queue: 1 + the queued runs on the same queue that came before."""
    ahead = db.session.scalar(
        select(func.count())
        .select_from(GradingRun)
        .where(GradingRun.status == "queued", GradingRun.queue == run.queue, GradingRun.id < run.id)
    )
    return int(ahead or 0) + 1


def describe(submission: Submission, access: str) -> dict[str, Any]:
    """The API document of a submission, as `access` ("owner" or "instructor") may see it."""
    assignment = submission.assignment
    doc: dict[str, Any] = {
        "id": submission.id,
        "url": url_for("api.get_submission", submission_id=submission.id, _external=True),
        "assignment": assignment.slug,
        "status": submission.status,
        "submitted_at": submission.created_at.isoformat(),
        "file": {"name": submission.original_name, "size": submission.size, "sha256": submission.sha256},
        "user": {"email": submission.user.email, "external_id": submission.user.external_id},
    }
    run = submission.published_run
    if run is None:
        return doc
    if submission.status == "queued":
        doc["queue_position"] = queue_position(run)
    doc["grading"] = {
        "run": run.number,
        "attempt": run.attempt,
        "runner": run.runner,
        "image": run.image,
        "assignment_version": run.assignment_version,
        "queued_at": run.queued_at.isoformat(),
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }
    if run.status == "error":
        doc["message"] = run.message
    if run.status == "graded" and run.result is not None:
        result = run.result if access == "instructor" else for_student(run.result, assignment.is_past_due())
        doc.update({key: result[key] for key in RESULT_FIELDS if key in result})
    return doc
