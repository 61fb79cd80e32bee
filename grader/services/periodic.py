"""Whether beat's periodic jobs run: each run is recorded (by the beat process), and the queue panel is told
when the recovery sweep is late while runs wait on it.

The sweeps queue again a grading whose worker died, publish runs the broker lost and send LMS retries that are
due. Without a `grader beat` (one per deployment), or with every sweep failing, nothing of that happens and
nothing else says so: a run stays "running" for ever after its worker died.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import or_, select
from sqlalchemy.exc import SQLAlchemyError

from grader import celery_app as tasks
from grader.database import db
from grader.models import GradingRun, Submission, database_now
from grader.models.periodic import PeriodicJob

log = logging.getLogger(__name__)

LATE_GRACE = 15.0  # seconds beyond three sweep intervals before the recovery sweep counts as late


def record_run(name: str, error: str | None) -> None:
    """Note that periodic job `name` ran now, and failed with `error` if it did (its own transaction)."""
    try:
        db.session.rollback()  # a job that failed may leave its session's transaction failed
        now = database_now(db.session)
        job = db.session.get(PeriodicJob, name) or PeriodicJob(name=name)
        job.last_run_at = now
        if error is None:
            job.last_ok_at, job.last_error = now, None
        else:
            job.last_error = error[:500]
        db.session.add(job)
        db.session.commit()
    except SQLAlchemyError as exc:  # the database is down: the job itself said so already
        db.session.rollback()
        log.warning("could not record periodic job %s: %s", name, exc)


def sweep_warning(assignment_ids: list[int] | None = None, now: datetime | None = None) -> str | None:
    """What an instructor must know when the recovery sweep is late (it has not succeeded for three intervals)
    while runs have waited on the queue or a worker longer than that; None otherwise. `now` is the database's
    clock, read here unless the caller has it."""
    interval = float(current_app.config["GRADER_SWEEP_INTERVAL"])
    late_after = timedelta(seconds=3 * interval + LATE_GRACE)
    now = now or database_now(db.session)
    job = db.session.get(PeriodicJob, tasks.RECOVER_RUNS)
    if job is not None and job.last_ok_at is not None and now - job.last_ok_at < late_after:
        return None
    waiting = select(GradingRun.id).where(
        GradingRun.status.in_(("queued", "running")),
        or_(GradingRun.queued_at < now - late_after, GradingRun.started_at < now - late_after))
    if assignment_ids is not None:
        waiting = waiting.join(Submission, Submission.id == GradingRun.submission_id).where(
            Submission.assignment_id.in_(assignment_ids))
    if db.session.scalar(waiting.limit(1)) is None:
        return None
    consequence = ("until they run, a grading whose worker died stays running, runs the broker lost stay queued, "
                   "and LMS retries wait")
    if job is None:
        return f"The recovery sweeps have never run here: start grader beat (one per deployment); {consequence}."
    if job.last_error and now - job.last_run_at < late_after:
        return f"The recovery sweeps fail ({job.last_error}); {consequence}."
    seconds = int((now - (job.last_ok_at or job.last_run_at)).total_seconds())
    since = f"{seconds} s" if seconds < 120 else f"{seconds // 60} min"
    return (f"The recovery sweeps last ran {since} ago (every {interval:g} s): is grader beat running? "
            f"{consequence[0].upper()}{consequence[1:]}.")
