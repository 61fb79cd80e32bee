"""Outbound events to the LMS through a real Celery worker (in-process, memory broker) and real loopback
receivers: signed per Standard Webhooks, retried with backoff, every attempt logged, redeliverable."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from itertools import pairwise
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, text

from grader.auth.identity import session_values
from grader.extensions import db
from grader.lms import integrations, outbound
from grader.models import Submission
from grader.models.lms import LmsDelivery
from tests.conftest import REFERENCE_SOLUTION, Factory, Person, upload
from tests.support.lms_helpers import (
    Receiver,
    embedded_worker,
    free_port_url,
    signed_headers,
    submission_body,
    verified,
    wait_until,
)
from worker.engine.result import DeliverableResult, GradeResult

DELAYS = [0.3, 0.6]


class Cast:
    """DEMO101 with autograd, an instructor and a student known to the LMS."""

    def __init__(self) -> None:
        factory = Factory()
        self.course = factory.course("DEMO101")
        self.assignment = factory.assignment(self.course, "autograd")
        self.instructor: Person = factory.person("prof@example.edu", self.course, "instructor", role="instructor")
        self.student: Person = factory.person("ada@example.edu", self.course, external_id="canvas-42")


@pytest.fixture
def lms_app(make_app: Callable[..., Flask]) -> Iterator[Flask]:
    """An app on the memory broker (for the embedded worker) with fast retry delays."""
    app = make_app(BROKER_URL="memory://", GRADER_LMS_RETRY_DELAYS=",".join(map(str, DELAYS)),
                   GRADER_LMS_TIMEOUT=5)
    with app.app_context():
        yield app


@pytest.fixture
def cast(lms_app: Flask) -> Cast:
    """The people and course of these tests."""
    return Cast()


@pytest.fixture
def fake_engine(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Replace the grading engine (the worker's `run_engine` seam) by a canned result: "graded" or "error"."""

    def install(status: str = "graded") -> None:
        """Make the engine answer with `status`."""
        def run_engine(manifest: Any, files: dict[str, bytes], runner: Any) -> GradeResult:
            """80 % of every deliverable, or an infrastructure error."""
            parts = [DeliverableResult(id=d.id, title=d.title, score=d.points * 0.8, max_score=d.points)
                     for d in manifest.deliverables]
            if status == "error":
                return GradeResult(assignment=manifest.id, status="error", score=0.0, max_score=100.0,
                                   message="Grading failed: the sandbox did not start", runner="local")
            return GradeResult(assignment=manifest.id, status="graded", score=80.0, max_score=100.0,
                               deliverables=parts, runner="local")

        monkeypatch.setattr("worker.tasks.run_engine", run_engine)

    return install


def only_delivery() -> LmsDelivery:
    """The single delivery these tests make."""
    rows = db.session.scalars(select(LmsDelivery)).all()
    assert len(rows) == 1
    return rows[0]


def test_receiver_failing_twice_gets_the_event_once_it_recovers(lms_app: Flask, cast: Cast,
                                                                fake_engine: Callable[[str], None]) -> None:
    """Does a receiver that answers 500 then 502 get the signed event on the third attempt, after the
    configured delays, with every attempt logged and the same event id each time?"""
    fake_engine("graded")
    with Receiver(script=[500, 502]) as receiver:
        _, secrets = integrations.add_integration("canvas", "DEMO101", receiver.url)
        client = lms_app.test_client()
        with embedded_worker(lms_app):
            response = upload(client, "autograd", REFERENCE_SOLUTION.read_bytes(), headers=cast.student.headers)
            assert response.status_code == 202
            wait_until(lambda: only_delivery().status == "delivered" if db.session.scalar(
                select(LmsDelivery.id)) else False)
    delivery = only_delivery()
    assert len(receiver.received) == 3
    assert {r.headers["webhook-id"] for r in receiver.received} == {delivery.event_id}
    assert len({r.body for r in receiver.received}) == 1  # the same payload every time
    event = verified(receiver.received[-1], secrets.outbound or "")
    assert event["type"] == "submission.graded"
    data = event["data"]
    assert data["submission_id"] == response.json["id"] and data["assignment"] == "autograd"
    assert data["user"] == {"external_id": "canvas-42", "email": "ada@example.edu"}
    assert (data["score"], data["max_score"]) == (80.0, 100.0)
    assert [d["id"] for d in data["deliverables"]] == [d.slug for d in cast.assignment.active_deliverables]
    assert "tests" not in data["deliverables"][0]  # per-deliverable scores only, never test details
    log = delivery.attempt_log
    assert [a.status_code for a in log] == [500, 502, 200]
    assert [a.outcome for a in log] == ["retry in 0.3 s", "retry in 0.6 s", "delivered"]
    gaps = [(b.started_at - a.started_at).total_seconds() for a, b in pairwise(log)]
    assert gaps[0] >= DELAYS[0] - 0.05 and gaps[1] >= DELAYS[1] - 0.05, gaps


def test_receiver_down_for_good_stops_after_the_last_retry(lms_app: Flask, cast: Cast,
                                                           fake_engine: Callable[[str], None]) -> None:
    """When nothing ever answers, do attempts stop after 1 + len(delays), the delivery end `failed`, and the
    log (and the instructor's page) say it gave up?"""
    fake_engine("graded")
    integrations.add_integration("canvas", "DEMO101", free_port_url())
    client = lms_app.test_client()
    with embedded_worker(lms_app):
        assert upload(client, "autograd", b"x = 1\n", headers=cast.student.headers).status_code == 202
        wait_until(lambda: db.session.scalar(select(LmsDelivery.status)) == "failed")
        attempts_then = len(only_delivery().attempt_log)
        time.sleep(sum(DELAYS))  # long enough for a (wrong) further attempt to show up
        db.session.rollback()
    delivery = only_delivery()
    assert attempts_then == len(delivery.attempt_log) == 1 + len(DELAYS)
    assert all(a.status_code is None and "ConnectionError" in a.error for a in delivery.attempt_log)
    assert delivery.attempt_log[-1].outcome == "gave up after 3 attempts"
    page = client.get("/lms/canvas/deliveries", headers=cast.instructor.headers)
    assert page.status_code == 200
    assert b"gave up after 3 attempts" in page.data and b"failed" in page.data


def test_instructor_redelivers_after_the_receiver_is_fixed(lms_app: Flask, cast: Cast,
                                                           fake_engine: Callable[[str], None]) -> None:
    """After giving up, does the instructor's redeliver send the same event (same id) to the now-working
    receiver — while a student may not, and a session without a CSRF token may not either?"""
    fake_engine("graded")
    integrations.add_integration("canvas", "DEMO101", free_port_url())
    client = lms_app.test_client()
    with embedded_worker(lms_app):
        upload(client, "autograd", b"x = 1\n", headers=cast.student.headers)
        wait_until(lambda: db.session.scalar(select(LmsDelivery.status)) == "failed")
        delivery = only_delivery()
        url = f"/lms/canvas/deliveries/{delivery.id}/redeliver"
        assert client.post(url, headers=cast.student.headers).status_code == 403
        with Receiver() as receiver:
            integrations.set_outbound_url("canvas", receiver.url)
            response = client.post(url, headers=cast.instructor.headers)
            assert response.status_code == 302
            wait_until(lambda: db.session.scalar(select(LmsDelivery.status)) == "delivered")
    delivery = only_delivery()
    assert [r.headers["webhook-id"] for r in receiver.received] == [delivery.event_id]
    assert [a.outcome for a in delivery.attempt_log][-1] == "delivered" and len(delivery.attempt_log) == 4

    browser = lms_app.test_client()
    with browser.session_transaction() as session:
        session.update(session_values(cast.instructor.user))
    refused = browser.post(url)  # a logged-in browser without the form's CSRF token
    assert refused.status_code == 400


def test_failed_grading_sends_submission_failed(lms_app: Flask, cast: Cast,
                                                fake_engine: Callable[[str], None]) -> None:
    """Does a grading that ends in error send a signed `submission.failed` event with the message?"""
    fake_engine("error")
    with Receiver() as receiver:
        _, secrets = integrations.add_integration("canvas", "DEMO101", receiver.url)
        with embedded_worker(lms_app):
            upload(lms_app.test_client(), "autograd", b"x = 1\n", headers=cast.student.headers)
            wait_until(lambda: db.session.scalar(select(LmsDelivery.status)) == "delivered")
    event = verified(receiver.received[0], secrets.outbound or "")
    assert event["type"] == "submission.failed"
    assert event["data"]["status"] == "error" and "sandbox" in event["data"]["message"]


def test_a_worker_that_dies_just_after_storing_a_grade_still_tells_the_lms(
        lms_app: Flask, cast: Cast, fake_engine: Callable[[str], None], monkeypatch: pytest.MonkeyPatch) -> None:
    """The grade and its `submission.graded` delivery commit together: when the worker's process ends right
    after that commit (before it queues anything), is the delivery already stored, and does the periodic poll
    send it?"""
    import worker.tasks
    from grader.services import grading

    fake_engine("graded")

    def process_ends(*_: Any) -> None:  # the first thing the worker does after the commit
        raise SystemExit("killed")

    monkeypatch.setattr(grading, "_log_outcome", process_ends)
    with Receiver() as receiver:
        _, secrets = integrations.add_integration("canvas", "DEMO101", receiver.url)
        response = upload(lms_app.test_client(), "autograd", b"x = 1\n", headers=cast.student.headers)
        with pytest.raises(SystemExit):
            worker.tasks.grade_submission.apply(args=[response.json["id"]])
        db.session.rollback()
        # What another process (the next poll) finds: the run graded, and its event waiting to leave.
        with db.engine.connect() as other:
            assert other.scalar(select(Submission.status)) == "graded"
            assert other.scalar(select(LmsDelivery.status)) == "pending"
        assert receiver.received == []
        with embedded_worker(lms_app):
            assert outbound.send_due() == 1
            wait_until(lambda: db.session.scalar(select(LmsDelivery.status)) == "delivered")
    event = verified(receiver.received[0], secrets.outbound or "")
    assert event["type"] == "submission.graded" and event["data"]["score"] == 80.0


def test_an_outbox_receiver_whose_statement_fails_costs_neither_the_grade_nor_the_lms_event(
        lms_app: Flask, cast: Cast, fake_engine: Callable[[str], None]) -> None:
    """A receiver of `outcome_recording` whose SQL the database refuses, inside the grade's transaction: is the
    grade still stored, and is the LMS's delivery still recorded and sent?"""
    from grader.signals import outcome_recording

    fake_engine("graded")

    def broken(app: Flask, **_: Any) -> None:
        db.session.execute(text("SELECT * FROM no_such_table"))

    with Receiver() as receiver, outcome_recording.connected_to(broken, lms_app):
        integrations.add_integration("canvas", "DEMO101", receiver.url)
        with embedded_worker(lms_app):
            response = upload(lms_app.test_client(), "autograd", b"x = 1\n", headers=cast.student.headers)
            wait_until(lambda: db.session.scalar(select(LmsDelivery.status)) == "delivered")
    db.session.rollback()
    assert db.session.get(Submission, response.json["id"]).status == "graded"
    assert len(receiver.received) == 1


def test_a_delivery_holds_no_database_transaction_while_the_receiver_takes_its_time(
        lms_app: Flask, cast: Cast, fake_engine: Callable[[str], None], monkeypatch: pytest.MonkeyPatch) -> None:
    """While the worker waits on the LMS (up to the timeout), is its database session out of any transaction, so
    that it holds no locks and no snapshot?"""
    import requests

    fake_engine("graded")
    in_transaction: list[bool] = []
    send = requests.Session.send

    def watched(self: requests.Session, request: Any, **kwargs: Any) -> Any:
        in_transaction.append(db.session().in_transaction())  # the worker thread's own session
        return send(self, request, **kwargs)

    monkeypatch.setattr(requests.Session, "send", watched)
    with Receiver() as receiver:
        integrations.add_integration("canvas", "DEMO101", receiver.url)
        with embedded_worker(lms_app):
            upload(lms_app.test_client(), "autograd", b"x = 1\n", headers=cast.student.headers)
            wait_until(lambda: db.session.scalar(select(LmsDelivery.status)) == "delivered")
    assert in_transaction == [False] and len(receiver.received) == 1


def test_duplicate_notifications_and_task_messages_send_once(lms_app: Flask, cast: Cast) -> None:
    """Do a second signal for the same run and a duplicated task message add no delivery and no POST?"""
    from grader.models import GradingRun
    from grader.services.submissions import submit

    with Receiver() as receiver:
        integrations.add_integration("canvas", "DEMO101", receiver.url)
        submission = submit(cast.student.user, cast.assignment, "solution.py", b"x = 1\n")
        run: GradingRun = submission.runs[0]
        run.status, run.score, run.max_score = "graded", 50.0, 100.0
        db.session.commit()
        first = outbound.create_deliveries("submission.graded", run.id)
        assert outbound.create_deliveries("submission.graded", run.id) == []
        assert outbound.attempt(first[0], 0) is None  # delivered on the first try: no retry
        assert outbound.attempt(first[0], 0) is None  # the same message again claims nothing
    assert len(receiver.received) == 1 and only_delivery().attempts == 1


def test_signed_inbound_submission_is_graded_and_the_event_reaches_the_lms(make_app: Callable[..., Flask]) -> None:
    """Done when: is a signed inbound submission graded for real (local runner) and the signed
    `submission.graded` event, with the full score, received by the LMS?"""
    app = make_app(BROKER_URL="memory://", GRADER_RUNNER="local", GRADER_LMS_RETRY_DELAYS="0.5")
    with app.app_context(), Receiver() as receiver:
        cast = Cast()
        _, secrets = integrations.add_integration("canvas", "DEMO101", receiver.url)
        body = submission_body(REFERENCE_SOLUTION.read_bytes(), external_id="canvas-99", email="grace@example.edu")
        with embedded_worker(app):
            response = app.test_client().post("/api/v1/lms/canvas/submissions", data=body,
                                              headers=signed_headers(secrets.inbound or "", body))
            assert response.status_code == 202, response.json
            wait_until(lambda: receiver.received, timeout=180)
        submission = db.session.get(Submission, response.json["id"])
        assert submission.status == "graded" and submission.user.external_id == "canvas-99"
        assert cast.assignment.id == submission.assignment_id
    event = verified(receiver.received[0], secrets.outbound or "")
    assert event["type"] == "submission.graded"
    assert event["data"]["submission_id"] == submission.id
    assert event["data"]["score"] == event["data"]["max_score"] == 100.0


def test_sweep_resends_deliveries_whose_task_was_lost(lms_app: Flask, cast: Cast) -> None:
    """If a delivery's task message is lost (broker flushed) or its worker died mid-attempt, does
    `sweep()` send it again — logging the lost attempt — so the event still arrives at least once?"""
    from datetime import timedelta

    from grader.models import utcnow
    from grader.services.submissions import submit

    with Receiver() as receiver:
        integrations.add_integration("canvas", "DEMO101", receiver.url)
        lost, stuck = (submit(cast.student.user, cast.assignment, "solution.py", f"x = {i}\n".encode())
                       for i in range(2))
        ids = []
        for submission in (lost, stuck):
            run = submission.runs[0]
            run.status, run.score, run.max_score = "graded", 10.0, 100.0
            db.session.commit()
            ids += outbound.create_deliveries("submission.graded", run.id)  # created, never queued
        long_ago = utcnow() - timedelta(hours=1)
        first, second = (db.session.get(LmsDelivery, i) for i in ids)
        first.next_attempt_at = long_ago
        second.status, second.attempts, second.next_attempt_at = "sending", 1, long_ago
        db.session.commit()
        with embedded_worker(lms_app):
            assert outbound.sweep() == 2
            wait_until(lambda: all(db.session.get(LmsDelivery, i).status == "delivered" for i in ids))
    assert len(receiver.received) == 2
    assert [a.outcome for a in db.session.get(LmsDelivery, ids[1]).attempt_log] == [
        "lost: the worker stopped during this attempt", "delivered"]
