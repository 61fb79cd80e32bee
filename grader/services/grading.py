"""Grading-run bookkeeping: claim a run, record the engine's result or an error — each exactly once."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from grader.database import db
from grader.models import FINISHED, DeliverableScore, GradingRun, Submission, TestResult, User, database_now
from grader.signals import notify, record_outbox, submission_failed, submission_graded
from worker.engine.result import GradeResult

log = logging.getLogger(__name__)


def find_run(submission_id: int, run_id: int | None = None) -> GradingRun | None:
    """The run to grade: `run_id`, or the submission's first run."""
    if run_id is not None:
        run = db.session.get(GradingRun, run_id)
        return run if run is not None and run.submission_id == submission_id else None
    return db.session.scalar(
        select(GradingRun).where(GradingRun.submission_id == submission_id).order_by(GradingRun.number).limit(1)
    )


def claim(run: GradingRun, worker: str | None) -> bool:
    """Mark `run` running for one more attempt; False when it finished or a live worker is grading it.

    One conditional UPDATE decides, so of two deliveries of the same run (a redelivered or re-published
    message) only one starts grading; a run whose worker stopped heartbeating may be taken over.
    """
    now = database_now(db.session)  # (the clock every heartbeat is written by: `database_now`)
    stale = now - timedelta(seconds=float(current_app.config["GRADER_HEARTBEAT_TIMEOUT"]))
    claimed = db.session.execute(
        update(GradingRun)
        .where(
            GradingRun.id == run.id,
            or_(
                GradingRun.status == "queued",
                (GradingRun.status == "running")
                & or_(GradingRun.heartbeat_at.is_(None), GradingRun.heartbeat_at < stale),
            ),
        )
        .values(status="running", attempt=GradingRun.attempt + 1, started_at=now, heartbeat_at=now,
                worker=worker, not_before=None, message="")
        .execution_options(synchronize_session=False)
    ).rowcount
    if not claimed:
        db.session.commit()
        db.session.refresh(run)
        return False
    db.session.refresh(run)
    _mirror_status(run)
    db.session.commit()
    return True


def requeue(run: GradingRun, reason: str, not_before: datetime | None = None) -> None:
    """Put `run` back to queued while a retry waits (the student sees it queued, with the reason)."""
    run.status = "queued"
    run.message = reason
    run.not_before = not_before
    run.heartbeat_at = None
    _mirror_status(run)
    db.session.commit()


def record_result(run: GradingRun, result: GradeResult, runner_facts: dict[str, object]) -> bool:
    """Store the engine's result: scores, test results, the document. False when another delivery beat us.

    Everything lands in one transaction guarded by the unique (run, deliverable) constraint, so two
    deliveries of the same task can both grade but only one can store a score. The LMS's deliveries and score
    publications of the outcome land in it too (`outcome_recording`): a worker killed just after the commit
    still leaves them for the periodic poll.
    """
    assignment = run.submission.assignment
    deliverables = {d.slug: d for d in assignment.deliverables}
    status = result.status if result.status in FINISHED else "error"
    run.status = status
    run.finished_at = database_now(db.session)  # LMSs order a submission's grades by it
    run.execution_time = result.execution_time
    run.score, run.max_score = result.score, result.max_score
    run.message = result.message
    run.result = result.to_dict()
    run.runner = result.runner or str(runner_facts.get("runner") or runner_facts.get("name") or "") or None
    image = runner_facts.get("image")
    run.image = str(image) if image else None
    scores: list[dict[str, object]] = []
    tests: list[dict[str, object]] = []
    for item in result.deliverables:
        deliverable = deliverables.get(item.id)
        if deliverable is None:
            log.error("run %s: the engine scored unknown deliverable %r; not stored", run.id, item.id)
            continue
        scores.append({"run_id": run.id, "deliverable_id": deliverable.id, "score": item.score,
                       "max_score": item.max_score})
        tests.extend({"run_id": run.id, "deliverable_id": deliverable.id, "position": len(tests) + index,
                      "name": test.name, "status": test.status, "score": test.score, "max_score": test.max_score,
                      "visibility": test.visibility, "output": test.output} for index, test in enumerate(item.tests))
    _mirror_status(run)
    try:
        # Rows in bulk (one statement per table, not one round trip per row): a run has dozens of tests.
        if scores:
            db.session.execute(insert(DeliverableScore), scores)
        if tests:
            db.session.execute(insert(TestResult), tests)
    except IntegrityError:
        db.session.rollback()
        log.warning("run %s was already recorded by another delivery; keeping that one", run.id)
        return False
    _finish(run, "failed" if status == "error" else "graded")
    return True


def record_error(run: GradingRun, message: str) -> None:
    """End `run` in error (not the student's fault) with a plain message, unless it already finished."""
    db.session.refresh(run)
    if run.status in FINISHED:
        return
    run.status = "error"
    run.finished_at = database_now(db.session)  # LMSs order a submission's grades by it
    run.message = message
    _mirror_status(run)
    _finish(run, "failed")


def _finish(run: GradingRun, event: str) -> None:
    """Commit the recorded outcome with its outbox rows, log it, then queue the rows' work and tell the rest."""
    then = record_outbox(run=run, event=event) if run.published else None
    user = run.submission.user  # loaded now, in this transaction, for the log line after it
    db.session.commit()
    _log_outcome(run, user)
    if then is not None:
        then()
    notify(submission_failed if event == "failed" else submission_graded,
           submission_id=run.submission_id, run_id=run.id, published=run.published)


def _log_outcome(run: GradingRun, user: User) -> None:
    """One line per recorded run: which submission, whose, the outcome and score (or the error's message)."""
    submission: Submission = run.submission
    fields = {"submission_id": run.submission_id, "run_id": run.id, "outcome": run.status,
              "assignment": submission.assignment.slug, "user": user.email, "attempt": run.attempt,
              "score": run.score, "max_score": run.max_score}
    if run.status == "graded":
        log.info("submission %s run %s (%s, %s) graded: %s / %s in %.1f s on attempt %s", run.submission_id,
                 run.number, fields["user"], fields["assignment"], run.score, run.max_score,
                 run.execution_time or 0.0, run.attempt, extra=fields)
    else:
        log.warning("submission %s run %s (%s, %s) ended in error on attempt %s: %s", run.submission_id,
                    run.number, fields["user"], fields["assignment"], run.attempt, run.message, extra=fields)


def _mirror_status(run: GradingRun) -> None:
    # The submission shows its published run's state; an unpublished regrade leaves it alone.
    if run.published:
        submission: Submission = run.submission
        submission.status = run.status
