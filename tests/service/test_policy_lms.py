"""The course policy in what leaves for an LMS: the outbound event carries the counted score (raw times the
late credit) with the raw one beside it, and a result with after-due-date tests waits for the student's due
date, so the LMS never shows what the student's own pages still withhold."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from flask import Flask
from sqlalchemy import delete, select

from grader.extensions import db
from grader.lms import integrations, outbound
from grader.models.lms import LmsDelivery
from grader.services.deadlines import withheld_until
from grader.services.policy import grant_extension, set_override
from tests.conftest import World
from tests.support.dashboard_support import full, graded_submission


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
