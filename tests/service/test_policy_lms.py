"""The course policy and an LMS. In what leaves for it: the outbound event carries the counted score (raw times
the late credit) with the raw one beside it, and a result with after-due-date tests waits for the student's due
date, so the LMS never shows what the student's own pages still withhold. In what comes from it: a message counts
as made when the LMS says the student submitted (within GRADER_LMS_BACKDATE_LIMIT), not when a retry got here."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import delete, func, select

from grader.extensions import db
from grader.lms import integrations, outbound
from grader.models import Submission
from grader.models.lms import LmsDelivery
from grader.services.deadlines import withheld_until
from grader.services.policy import grant_extension, set_override
from tests.conftest import REFERENCE_SOLUTION, World
from tests.support.dashboard_support import full, graded_submission
from tests.support.lms_helpers import signed_headers, submission_body


def at(**delta: float) -> str:
    """Now plus `delta`, ISO 8601 UTC."""
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


def with_after_due_test(submission: object) -> None:
    """Mark the first test of the submission's result after_due_date, as a manifest would."""
    run = submission.runs[0]  # type: ignore[attr-defined]
    first = dict(run.result["deliverables"][0])
    first["tests"] = [{**first["tests"][0], "visibility": "after_due_date"}, *first["tests"][1:]]
    run.result = {**run.result, "deliverables": [first, *run.result["deliverables"][1:]]}
    db.session.commit()


def test_the_outbound_event_carries_the_counted_score_of_late_work(app: Flask, world: World) -> None:
    """A late upload at 90 % scoring 100: does the event say score 90, raw_score 100, credit 90?"""
    integrations.add_integration("canvas", "DEMO101", "http://127.0.0.1:9/hook")
    set_override(world.assignment, {"due": at(hours=-1), "late_penalty_per_day": 10, "late_days": 2})
    submission = graded_submission(world.student, world.assignment, full(world.assignment))
    # Grading fired the event (the signal receivers ran): one delivery for the run.
    [delivery] = db.session.scalars(select(LmsDelivery).where(LmsDelivery.run_id == submission.runs[0].id))
    data = json.loads(delivery.payload)["data"]
    assert (data["score"], data["raw_score"], data["credit"]) == (90.0, 100.0, 90.0)


def test_a_result_with_after_due_tests_leaves_for_the_lms_only_after_the_due_date(app: Flask,
                                                                                   world: World) -> None:
    """Before the due date, is the event scheduled for the due date (not sent now); is one without
    after-due tests sent at once; and does a past due date release it?"""
    integrations.add_integration("canvas", "DEMO101", "http://127.0.0.1:9/hook")
    due = at(days=2)
    set_override(world.assignment, {"due": due})
    plain = graded_submission(world.student2, world.assignment, full(world.assignment))
    assert withheld_until(plain, plain.runs[0].result) is None
    secret = graded_submission(world.student, world.assignment, full(world.assignment))
    with_after_due_test(secret)
    assert withheld_until(secret, secret.runs[0].result) == datetime.fromisoformat(due)
    db.session.execute(delete(LmsDelivery))  # the event grading sent before the test was marked after-due
    db.session.commit()
    [delivery_id] = outbound.create_deliveries("submission.graded", secret.runs[0].id)
    assert db.session.get(LmsDelivery, delivery_id).next_attempt_at == datetime.fromisoformat(due)
    assert outbound.send_due() == 0  # nothing is due yet
    # An extension moves the student's own due date, and the hold with it.
    grant_extension(world.assignment, world.student.user, days=1)
    assert withheld_until(secret, secret.runs[0].result) == datetime.fromisoformat(due) + timedelta(days=1)
    set_override(world.assignment, {"due": at(hours=-1)})
    grant_extension(world.assignment, world.student.user, due=at(hours=-1))
    assert withheld_until(secret, secret.runs[0].result) is None


def test_a_held_webhook_waits_for_an_extension_granted_after_it_was_queued(app: Flask, world: World) -> None:
    """A result with after-due tests, held for the due date; the student then gets an extension. When the old
    due date comes, does the delivery move to the new one instead of leaving (no HTTP attempt), and does it
    leave once the student's own due date has passed?"""
    integrations.add_integration("canvas", "DEMO101", "http://127.0.0.1:9/hook")  # nothing listens on port 9
    set_override(world.assignment, {"due": at(days=2)})
    secret = graded_submission(world.student, world.assignment, full(world.assignment))
    with_after_due_test(secret)
    db.session.execute(delete(LmsDelivery))  # the event grading sent before the test was marked after-due
    db.session.commit()
    [delivery_id] = outbound.create_deliveries("submission.graded", secret.runs[0].id)
    # The course's due date comes (moved to an hour ago), but this student was given a day more meanwhile.
    set_override(world.assignment, {"due": at(hours=-1)})
    extension = grant_extension(world.assignment, world.student.user, days=1)
    delivery = db.session.get(LmsDelivery, delivery_id)
    delivery.next_attempt_at = datetime.now(UTC) - timedelta(hours=1)
    db.session.commit()
    assert outbound.send_due() == 1  # the poll finds it due by its old date...
    assert outbound.attempt(delivery_id, 0) is None  # ...and the attempt sees the extension
    db.session.refresh(delivery)
    assert (delivery.status, delivery.attempts, delivery.attempt_log) == ("pending", 0, [])
    assert delivery.next_attempt_at == extension.due_at
    # The extension's end passes: the next attempt really goes out (and fails: nothing listens there).
    grant_extension(world.assignment, world.student.user, due=at(hours=-1))
    outbound.attempt(delivery_id, 0)
    db.session.refresh(delivery)
    assert delivery.attempts == 1 and delivery.last_error



def _lms_sender(app: Flask) -> Callable[[datetime | str | None], Any]:
    """A function that sends a signed LMS message carrying the reference solution and, when given, the LMS's own
    `submitted_at` (a datetime, or the text as sent), and returns the answer."""
    _, secrets = integrations.add_integration("canvas", "DEMO101")
    assert secrets.inbound
    secret, client = secrets.inbound, app.test_client()

    def send(submitted_at: datetime | str | None) -> Any:
        when = submitted_at.isoformat() if isinstance(submitted_at, datetime) else submitted_at
        body = submission_body(REFERENCE_SOLUTION.read_bytes(), submitted_at=when)
        return client.post("/api/v1/lms/canvas/submissions", data=body, headers=signed_headers(secret, body))

    return send


def test_an_lms_message_retried_past_the_hard_close_counts_as_made_when_the_lms_says(app: Flask,
                                                                                     world: World) -> None:
    """With the due date also the hard close an hour ago, is a message whose LMS says the student submitted a
    minute before it (our service was down, and the LMS's retry came now) accepted on time at full credit, stamped
    with the LMS's time, while its grading counts as queued now?"""
    due = datetime.now(UTC) - timedelta(hours=1)
    set_override(world.assignment, {"due": due.isoformat(), "hard_close": due.isoformat()})
    made, before = due - timedelta(minutes=1), datetime.now(UTC)
    answer = _lms_sender(app)(made)
    assert answer.status_code == 202, answer.json
    submission = db.session.get(Submission, answer.json["id"])
    assert (submission.late_seconds, submission.credit) == (0, 100.0)
    assert abs(submission.created_at - made) < timedelta(milliseconds=1)
    assert submission.runs[0].queued_at >= before - timedelta(seconds=1)  # the queue's own times stay true


def test_an_lms_submitted_at_counts_back_only_as_far_as_the_limit(app: Flask, world: World) -> None:
    """With GRADER_LMS_BACKDATE_LIMIT at an hour and the due date three hours ago (late work allowed), does a
    message saying 30 minutes ago count as 2.5 hours late; one saying five hours ago (on time) as an hour before its
    arrival (two hours late); one dated ahead of its arrival as its arrival; and, with the limit at 0, one saying 30
    minutes ago as its arrival?"""
    app.config["GRADER_LMS_BACKDATE_LIMIT"] = 3600.0
    now = datetime.now(UTC)
    due = now - timedelta(hours=3)
    set_override(world.assignment, {"due": due.isoformat(), "late_penalty_per_day": 10, "late_days": 3})
    send = _lms_sender(app)
    answers = [send(when) for when in (now - timedelta(minutes=30), now - timedelta(hours=5),
                                       now + timedelta(minutes=10))]
    app.config["GRADER_LMS_BACKDATE_LIMIT"] = 0.0
    answers.append(send(now - timedelta(minutes=30)))
    assert [answer.status_code for answer in answers] == [202] * 4, [answer.json for answer in answers]
    late = [db.session.get(Submission, answer.json["id"]).late_seconds for answer in answers]
    assert late[0] == 2 * 3600 + 1800
    assert 2 * 3600 <= late[1] <= 2 * 3600 + 60
    assert 3 * 3600 <= late[2] <= 3 * 3600 + 60 and 3 * 3600 <= late[3] <= 3 * 3600 + 60


@pytest.mark.parametrize("submitted_at", ["2026-12-05T12:00:00", "yesterday", "2026-13-01T00:00:00Z"])
def test_an_lms_submitted_at_that_is_not_an_aware_time_is_refused_and_stores_nothing(
        app: Flask, world: World, submitted_at: str) -> None:
    """Is a `submitted_at` without an offset (whose zone we would have to guess), or not a time at all, refused
    with a 422 that says what is expected, with no submission stored?"""
    answer = _lms_sender(app)(submitted_at)
    assert answer.status_code == 422, answer.json
    assert answer.json["error"] == "invalid_message" and "RFC 3339" in answer.json["detail"]
    assert db.session.scalar(select(func.count()).select_from(Submission)) == 0
