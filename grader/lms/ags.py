"""LTI Assignment and Grade Services: publish a student's score to the platform's line item after grading.

One `LtiScore` row per (line item, graded run) makes the publication idempotent; the Celery task claims each
attempt like outbound deliveries do and retries on the same `GRADER_LMS_RETRY_DELAYS` schedule. What is
published is the score that counts in our gradebook (the assignment's latest/best policy, times the late
credit) at publishing time, stamped with that time, so a late retry never overwrites a newer score with an
older one. A result with after-due-date tests waits for the student's due date (the periodic `send_due`
sends it then), so the LMS never shows points the student's own pages still withhold.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import requests
from pylti1p3.assignments_grades import AssignmentsGradesService
from pylti1p3.exception import LtiException
from pylti1p3.grade import Grade
from pylti1p3.service_connector import ServiceConnector
from sqlalchemy import select, update

from grader.celery_app import PUBLISH_SCORE, send
from grader.database import db
from grader.lms import settings
from grader.lms.crypto import SecretUnreadable
from grader.lms.lti_conf import http_session, to_registration
from grader.lms.retries import held_back, pending_due, queue_once_committed, requeue
from grader.models import GradingRun, database_now, utcnow
from grader.models.lms import LtiIdentity, LtiLineItem, LtiScore
from grader.services.deadlines import withheld_until
from grader.services.scores import counted, counted_runs

log = logging.getLogger(__name__)


def create_scores(run_id: int) -> list[int]:
    """Record a publication for each line item of the run's assignment whose platform knows the student, in the
    caller's transaction (flushed, not committed); returns their ids."""
    run = db.session.get(GradingRun, run_id)
    if run is None or run.status != "graded":
        return []
    submission = run.submission
    created: list[int] = []
    items = db.session.scalars(
        select(LtiLineItem).where(LtiLineItem.assignment_id == submission.assignment_id)).all()
    # Held from the start where it must wait for the student's due date, so no poll finds it due before.
    wait = withheld_until(submission, run.result) if items else None
    for item in items:
        identity = db.session.scalar(
            select(LtiIdentity).where(
                LtiIdentity.registration_id == item.deployment.registration_id,
                LtiIdentity.user_id == submission.user_id,
            )
        )
        if identity is None:
            continue  # this student never launched from that platform: it has no `sub` for them
        exists = db.session.scalar(
            select(LtiScore.id).where(LtiScore.line_item_id == item.id, LtiScore.run_id == run.id)
        )
        if exists is None:
            score = LtiScore(line_item=item, user_id=submission.user_id, run_id=run.id,
                             next_attempt_at=wait or database_now(db.session))
            db.session.add(score)
            db.session.flush()
            created.append(score.id)
    return created


MAX_COUNTDOWN = 60.0  # seconds; longer retry delays are polled by `send_due`


def enqueue(score_id: int, expected_attempts: int, countdown: float = 0.0) -> None:
    """Queue a publication attempt (a broker failure is logged; the row stays pending)."""
    try:
        send(PUBLISH_SCORE, args=[score_id, expected_attempts], countdown=countdown or None)
    except Exception:
        log.exception("could not queue LTI score %s", score_id)


def score_document(score: LtiScore, sub: str, stamp: datetime) -> dict[str, Any]:
    """The AGS score for the student's counted run, stamped `stamp`: scoreGiven, scoreMaximum, progress, timestamp,
    userId.

    The platform keeps the score with the latest timestamp and ignores an older one, so `stamp` is the database's
    clock, never the publishing host's: a regrade published by a worker whose clock ran behind was stamped before
    the grade it replaced and silently dropped. It is read before the counted run, so a publication that missed a
    newer grade is stamped before that grade's commit, and so before that grade's own publication.
    """
    item = score.line_item
    assignment = item.assignment
    chosen = counted_runs(assignment, assignment.score_policy).get(score.user_id)
    run = chosen[1] if chosen else db.session.get(GradingRun, score.run_id)
    assert run is not None
    grade = (
        Grade()
        .set_score_given(float(counted(run.submission, run) or 0.0))
        .set_score_maximum(float(run.max_score if run.max_score is not None else assignment.max_score))
        .set_activity_progress("Completed")
        .set_grading_progress("FullyGraded")
        .set_timestamp(stamp.isoformat(timespec="milliseconds"))
        .set_user_id(sub)
    )
    return json.loads(grade.get_value())


class DatabaseClockConnector(ServiceConnector):
    """pylti1p3's connector, with the client assertion of its token request stamped by the database's clock.

    The platform refuses an assertion whose `exp` (this host's clock plus 60 s) it sees as past: a worker host
    whose clock ran a minute or more behind could publish no score at all, every retry refused as expired."""

    def __init__(self, registration: Any, session: requests.Session, ahead: float) -> None:
        super().__init__(registration, session)
        self.ahead = round(ahead)  # seconds the database's clock is ahead of this host's

    def encode_jwt(self, message: dict[str, str | int], private_key: str, headers: dict[str, str]) -> str:
        """Sign `message` with its times moved onto the database's clock."""
        moved = {key: value + self.ahead if key in ("iat", "exp", "nbf") and isinstance(value, int) else value
                 for key, value in message.items()}
        return super().encode_jwt(moved, private_key, headers)


def attempt(score_id: int, expected_attempts: int) -> float | None:
    """Publish once if still due; returns the delay before a retry, or None when done (sent or given up)."""
    pending = db.session.get(LtiScore, score_id)
    if pending is not None and pending.status == "pending" and held_back(pending):
        return None  # an extension moved the student's due date since: it waits for the new one
    claimed = db.session.execute(
        update(LtiScore)
        .where(LtiScore.id == score_id, LtiScore.status == "pending", LtiScore.attempts == expected_attempts)
        .values(attempts=expected_attempts + 1, next_attempt_at=database_now(db.session))
    ).rowcount
    db.session.commit()
    if not claimed:
        return None
    score = db.session.get(LtiScore, score_id)
    assert score is not None
    item = score.line_item
    registration = item.deployment.registration
    identity = db.session.scalar(
        select(LtiIdentity).where(LtiIdentity.registration_id == registration.id, LtiIdentity.user_id == score.user_id)
    )
    try:
        if identity is None:
            raise LtiException("the student's platform identity is gone")
        stamp = database_now(db.session)  # before the counted run is read (score_document says why)
        ahead = (stamp - utcnow()).total_seconds()
        document = score_document(score, identity.sub, stamp)
        grade = Grade().set_extra_claims(document)  # the document already holds every field
        platform = to_registration(registration)
        line_item = {"scope": list(item.scopes), "lineitem": item.url, "lineitems": item.lineitems_url or ""}
        with http_session() as http:  # its calls (a token request, then the score) end our transaction first
            AssignmentsGradesService(DatabaseClockConnector(platform, http, ahead), line_item).put_grade(grade)
    except (LtiException, requests.RequestException, ValueError, SecretUnreadable) as exc:
        score.last_error = f"{type(exc).__name__}: {exc}"[:1000]
        delays = settings.retry_delays()
        if score.attempts <= len(delays):
            delay = delays[score.attempts - 1]
            score.next_attempt_at = database_now(db.session) + timedelta(seconds=delay)
            db.session.commit()
            return delay
        score.status, score.next_attempt_at = "failed", None
        log.warning("LTI score %s: gave up after %d attempts: %s", score.id, score.attempts, score.last_error)
        db.session.commit()
        return None
    score.status, score.sent, score.sent_at, score.last_error = "sent", document, database_now(db.session), ""
    score.next_attempt_at = None
    db.session.commit()
    return None


def publish(score_id: int, expected_attempts: int = 0) -> None:
    """The publication task's body (`worker.tasks.publish_score`): publish a score to the platform, retrying
    with backoff when the platform is unreachable or refuses."""
    delay = attempt(score_id, expected_attempts)
    # As for webhook deliveries: long waits are polled (`send_due`), never a countdown past the visibility timeout.
    if delay is not None and delay <= MAX_COUNTDOWN:
        score = db.session.get(LtiScore, score_id)
        if score is not None:
            enqueue(score_id, score.attempts, countdown=delay)


def send_due(republish_after: float = 300.0) -> int:
    """Queue every pending publication whose next attempt is due (the periodic poll); how many."""
    now = database_now(db.session)
    return requeue(pending_due(LtiScore, now), now + timedelta(seconds=republish_after), enqueue)


def sweep(grace: float = 300.0) -> int:
    """Re-queue pending publications overdue by more than `grace` seconds (a lost task message, or a worker
    that died mid-attempt — publishing twice is harmless: the platform keeps the latest)."""
    late = database_now(db.session) - timedelta(seconds=grace + settings.timeout())
    rows = db.session.scalars(
        select(LtiScore).where(LtiScore.status == "pending", LtiScore.next_attempt_at < late)
    ).all()
    return requeue(rows, database_now(db.session), enqueue)


def on_outcome(app: Any, run: GradingRun, event: str, **_: Any) -> Callable[[], None] | None:
    """`outcome_recording` receiver: record the graded run's publications in the outcome's own transaction;
    once that has committed, queue them, unless they wait for the student's due date (`send_due` publishes them
    then, and any whose queueing failed)."""
    if event != "graded":
        return None
    return queue_once_committed(LtiScore, create_scores(run.id), enqueue)
