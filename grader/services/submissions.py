"""Accept an upload, queue its grading, and describe a submission to the people allowed to see it."""

from __future__ import annotations

import hashlib
import logging
import re
import time
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from grader.auth.permissions import require_member
from grader.database import db, loaded_once
from grader.errors import KeyReused, NotFound, ServiceError, TooLarge, Unavailable, UploadRejected
from grader.models import Assignment, GradingRun, Submission, User, database_now
from grader.services.assignments import load_manifest
from grader.services.deadlines import decide_upload, lock_student, student_policy
from grader.services.queue import grading_paused
from grader.services.storage import store
from grader.signals import notify, submission_queued
from worker.engine.errors import UsageError
from worker.engine.grade import check_files
from worker.engine.policy import Policy, counted_score
from worker.engine.result import for_student

log = logging.getLogger(__name__)

RESULT_FIELDS = ("score", "max_score", "message", "execution_time", "deliverables", "import_failure")
# What a student reads while their accepted upload waits for the broker to come back.
QUEUE_DOWN_MESSAGE = "queued; grading starts when the queue is back"
# ... and while no online worker takes gradings from its queue (none is online, or each is paused: its Docker
# engine is down, its disk is full), rather than a place in the queue that does not move.
GRADING_PAUSED_MESSAGE = ("queued; grading is paused because no worker is taking submissions now: "
                          "this one keeps its place and is graded as soon as one is")
# Said only of a run that has waited this long since it was sent: a worker reconnecting to a restarted broker
# misses an ask or two, and a wait of seconds needs no explanation.
PAUSED_AFTER = timedelta(seconds=20)


# An idempotency key: visible ASCII (a UUID; a structured-field string, quotes and all), at most a column's length.
# The OpenAPI document's schema of the header is built from the same two.
KEY_CHARACTER = r"[\x21-\x7e]"
KEY_MAX_LENGTH = 255
_KEY = re.compile(f"{KEY_CHARACTER}{{1,{KEY_MAX_LENGTH}}}")


def single_file(files: list[Any]) -> Any:
    """The one uploaded file of a form's `file` field, or a ServiceError (none, an empty name, or two):
    the API and the web form refuse the same requests with the same words."""
    if len(files) != 1 or not files[0].filename:
        raise ServiceError("send exactly one file in the multipart field 'file'", code="missing_file")
    return files[0]


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


def upload_key(value: str | None) -> str | None:
    """The idempotency key a client sent with an upload (an Idempotency-Key header's value, taken as it is: a
    client sends the same value each time, quoted as a structured-field string or bare), None when it sent none;
    a malformed one is refused."""
    if value is None:
        return None
    if not _KEY.fullmatch(value):
        raise ServiceError("an Idempotency-Key is 1 to 255 visible ASCII characters", code="invalid_idempotency_key")
    return value


def sent_again(user: User | None, slug: str | None, value: str | None, files: list[Any]) -> bool:
    """Whether an upload is one `user` already made, sent again: the same single file to assignment `slug` with
    the same idempotency key `value`, which `submit` answers with the submission it made, storing nothing. False
    for anything else (a malformed key, another file: a new upload or a refusal), and when the database cannot
    tell (the upload then meets the outage itself). The file's stream is left where it was."""
    if user is None or slug is None or value is None or not _KEY.fullmatch(value) or len(files) != 1:
        return False
    try:
        earlier = _keyed(user, value)
        if earlier is None:
            return False
        stream = files[0].stream
        start = stream.tell()
        data = stream.read(int(current_app.config["GRADER_MAX_UPLOAD_BYTES"]) + 1)
        stream.seek(start)
        return _made_of(earlier, slug, files[0].filename or "", data)
    except SQLAlchemyError:
        db.session.rollback()
        return False


def submit(user: User, assignment: Assignment, name: str, data: bytes, key: str | None = None,
           received: float | None = None, submitted_at: datetime | None = None,
           backdate_limit: timedelta = timedelta(0)) -> Submission:
    """Store a checked upload with its submission and first grading run in one transaction, then ring the
    broker's doorbell.

    The database is the record: once the commit succeeds the upload is accepted, whether or not the broker
    takes the task now. A run the broker refused keeps `enqueued_at` empty and the outbox sweep
    (`grader.services.recovery.publish_pending`) sends it when the broker is back. Every check happens before
    anything is written, so a refused upload leaves nothing behind; a database outage raises Unavailable.

    `key` is the client's idempotency key (`upload_key`). The same upload sent again with it, because its answer
    was lost or the form was sent twice, gets the submission it made: nothing is stored or queued again, and no
    policy counts it twice (not the submission limit, not the cooldown). The key sent with another upload is
    refused (KeyReused).

    `received` is a `time.monotonic()` reading this process took once the upload's bytes had all arrived: the
    policy judges the upload as of then, so the time a busy server takes to get to it (the checks, the wait for
    the student's lock) never makes on-time work late. (From the bytes' arrival, not the request's start: a
    client trickling its body past the due date must not be judged by when it began.)

    `submitted_at` is the sender's own record of when the student submitted (an LMS's, vouched for by its
    signature): the upload counts as made then when that is before its arrival, and at most `backdate_limit`
    before (an earlier one counts as that limit: a sender's clock gone wrong moves nothing further).
    """
    require_member(user, assignment.course)
    check_upload(assignment, name, data)
    # The rows loaded and written here stay loaded across the two commits (the upload's, the broker's receipt):
    # what they say is what this request wrote. (The API's handler describes the upload inside a block of its
    # own, so its answer reads none of them again.)
    with loaded_once():
        try:
            # The policy is judged by the database server's clock now (one clock, whichever web host takes the
            # upload), under a lock on the student's enrollment, and its decision is stored with the submission:
            # grading later never changes whether it was late.
            lock_student(assignment, user)
            if key is not None and (earlier := _keyed(user, key)) is not None:
                _same_upload(earlier, assignment, name, data)
                db.session.commit()  # nothing written: releases the lock
                return _resent(earlier)
            now = database_now(db.session)
            if received is not None:
                now -= timedelta(seconds=max(0.0, time.monotonic() - received))
            # `made` is when the upload counts as made (what the policy judges, the submission's time); `now`, when
            # it arrived, is when its grading was queued.
            made = _made_at(now, submitted_at, backdate_limit)
            decision = decide_upload(assignment, user, made)
            sha256 = store().put(data)
            submission = Submission(user=user, assignment=assignment, sha256=sha256, original_name=name,
                                    size=len(data), credit=decision.credit, late_seconds=decision.late_seconds,
                                    grace_days_used=decision.grace_days_used, created_at=made, upload_key=key)
            submission.runs.append(GradingRun(number=1, published=True, queue=assignment.queue, queued_at=now))
            db.session.add(submission)
            db.session.commit()
        except ServiceError:
            db.session.rollback()  # release the lock; nothing was written
            raise
        except DBAPIError as exc:
            db.session.rollback()
            # The same key's first request committed while this one waited for it (an upload to another course
            # takes another lock), and the key's uniqueness refused this one: that submission is the answer.
            earlier = _keyed(user, key) if key is not None and isinstance(exc, IntegrityError) else None
            if earlier is None:
                log.error("could not store an upload: %s", exc)
                raise Unavailable("the database is unavailable; nothing was stored, please try again shortly") from exc
            _same_upload(earlier, assignment, name, data)
            return _resent(earlier)
        run = submission.runs[0]
        enqueue(run)
    notify(submission_queued, submission_id=submission.id, run_id=run.id)
    return submission


def _made_at(arrived: datetime, submitted_at: datetime | None, limit: timedelta) -> datetime:
    """When an upload that arrived at `arrived` counts as made, by its sender's `submitted_at` and the limit."""
    if submitted_at is None or submitted_at >= arrived:
        return arrived
    if arrived - submitted_at <= limit:
        return submitted_at
    if limit:  # a limit of 0 turns the sender's time off: nothing to warn of
        log.warning("an upload that arrived at %s says it was submitted at %s, more than %s before: it counts as "
                    "made at %s", arrived.isoformat(), submitted_at.isoformat(), limit, (arrived - limit).isoformat())
    return arrived - limit


def _keyed(user: User, key: str) -> Submission | None:
    """The submission `user` made with idempotency key `key`, if any."""
    return db.session.scalar(select(Submission).where(Submission.user_id == user.id, Submission.upload_key == key))


def _made_of(earlier: Submission, slug: str, name: str, data: bytes) -> bool:
    """Whether submission `earlier` was made of file `data` named `name`, to assignment `slug`."""
    return (earlier.assignment.slug, earlier.original_name, earlier.sha256) == (
        slug, name, hashlib.sha256(data).hexdigest())


def _same_upload(earlier: Submission, assignment: Assignment, name: str, data: bytes) -> None:
    """Refuse a key sent again with an upload other than the one it first came with."""
    if not _made_of(earlier, assignment.slug, name, data):
        raise KeyReused(f"this Idempotency-Key came with another upload first (submission {earlier.id}); "
                        "send a new key with each new upload")


def _resent(earlier: Submission) -> Submission:
    """The answer to an upload sent again: its submission, whose grading is published now if its first request
    stored it but never sent it (it died in between, or the broker refused), rather than at the next sweep."""
    run = earlier.published_run
    unsent = run is not None and run.status == "queued" and run.enqueued_at is None
    log.info("upload sent again with its key: answered with submission %s%s", earlier.id,
             ", whose grading it sends now" if unsent else "")
    if unsent and run is not None:
        enqueue(run)
    return earlier


def enqueue(run: GradingRun) -> bool:
    """Publish the grading task of committed `run` and note when; False (logged) when the broker refused it,
    in which case the outbox sweep publishes it later. Never raises for a broker outage."""
    from grader.services.recovery import publish

    return publish(run)


def find_submission(submission_id: int) -> Submission:
    """Submission `submission_id`, or NotFound (the pages, the API and the instructor's actions say it alike)."""
    submission = db.session.get(Submission, submission_id)
    if submission is None:
        raise NotFound(f"no submission {submission_id}")
    return submission


def queue_position(run: GradingRun) -> int:
    """1-based place of a queued run in its queue: 1 + the queued runs on the same queue that came before."""
    ahead = db.session.scalar(
        select(func.count())
        .select_from(GradingRun)
        .where(GradingRun.status == "queued", GradingRun.queue == run.queue, GradingRun.id < run.id)
    )
    return int(ahead or 0) + 1


def describe(submission: Submission, access: str, url: str, now: datetime | None = None,
             policy: Policy | None = None) -> dict[str, Any]:
    """The API document of a submission, as `access` ("owner" or "instructor") may see it, at `now` (the
    database's clock unless given: a list reads it once for all its documents). An owner sees what their `policy`
    shows (the one that applies to the submitter, looked up unless given: a list of one student's submissions
    looks it up once).

    `url` is where the document lives (the caller knows its routes; a service builds no URLs).
    """
    assignment = submission.assignment
    doc: dict[str, Any] = {
        "id": submission.id,
        "url": url,
        "assignment": assignment.slug,
        "status": submission.status,
        "submitted_at": submission.created_at.isoformat(),
        "file": {"name": submission.original_name, "size": submission.size, "sha256": submission.sha256},
        "user": {"email": submission.user.email, "external_id": submission.user.external_id},
        "late": late_doc(submission),
    }
    run = submission.published_run
    if run is None:
        return doc
    if submission.status == "queued":
        doc["queue_position"] = queue_position(run)
        if run.enqueued_at is None:
            doc["message"] = QUEUE_DOWN_MESSAGE
        elif grading_paused(run.queue) and (now or database_now(db.session)) - run.enqueued_at >= PAUSED_AFTER:
            doc["message"] = GRADING_PAUSED_MESSAGE
        elif run.message:
            doc["message"] = run.message
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
        if access == "instructor":
            result = run.result
        else:
            policy = policy or student_policy(assignment, submission.user_id)
            visible = policy.results_visible(now or database_now(db.session))
            result = for_student(run.result, visible, policy.due is not None)
        doc.update({key: result[key] for key in RESULT_FIELDS if key in result})
        if result.get("withheld"):
            doc["withheld"] = True
            doc["full_max_score"] = result.get("full_max_score")
        # The score that counts is the raw score times the credit decided at upload time.
        doc["counted_score"] = counted_score(doc.get("score"), submission.credit)
    return doc


def late_doc(submission: Submission) -> dict[str, Any]:
    """The lateness decided at upload: seconds late, grace days spent, and the credit kept."""
    return {
        "late": submission.late_seconds > 0,
        "late_seconds": submission.late_seconds,
        "grace_days_used": submission.grace_days_used,
        "credit": submission.credit,
    }
