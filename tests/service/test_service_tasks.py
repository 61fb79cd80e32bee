"""The grading task: real engine results stored once, retries on infrastructure errors only, signals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

import worker.tasks
from grader.extensions import db
from grader.models import DeliverableScore, GradingRun, Submission, TestResult
from grader.services import grading
from grader.signals import submission_failed, submission_graded
from tests.conftest import REFERENCE_SOLUTION, STARTER_SOLUTION, World, make_world, upload
from worker.engine.errors import InfrastructureError
from worker.engine.result import DeliverableResult, GradeResult
from worker.engine.result import TestResult as EngineTest


def submit(client: FlaskClient, world: World, content: bytes | None = None) -> Submission:
    """Upload as the first student; the submission row."""
    response = upload(client, "autograd", content or REFERENCE_SOLUTION.read_bytes(), headers=world.student.headers)
    assert response.status_code == 202, response.json
    return db.session.get(Submission, response.json["id"])


def run_task(submission: Submission) -> Any:
    """Run the grading task eagerly, in this process, as a worker would."""
    return worker.tasks.grade_submission.apply(args=[submission.id])


def fake_result(score: float = 12.0) -> GradeResult:
    """An engine result with a visible, a hidden and an after-due-date test."""
    tests = [
        EngineTest("test_visible", "passed", 10.0, 10.0, "visible", "ok"),
        EngineTest("test_hidden", "failed", 0.0, 5.0, "hidden", "secret expected value 42"),
        EngineTest("test_later", "passed", 5.0, 5.0, "after_due_date", "shown after the due date"),
    ]
    deliverables = [DeliverableResult("simple_gradients", "Simple", score, 20.0, tests)]
    return GradeResult("autograd", "graded", score, 100.0, "Scored", 1.5, deliverables, "fake")


@pytest.fixture
def fake_engine(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Replace the engine call; append results or exceptions to the returned list to script it."""
    script: list[Any] = []

    def engine(manifest: Any, files: dict[str, bytes], runner: Any) -> GradeResult:
        step = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(step, BaseException):
            raise step
        return step

    monkeypatch.setattr(worker.tasks, "run_engine", engine)
    return script


def test_reference_solution_scores_full_marks_with_the_real_engine(app: Flask, client: FlaskClient,
                                                                   world: World) -> None:
    """Does the task grade the reference solution 100/100 through the real engine (local runner) and store it?"""
    submission = submit(client, world)
    run_task(submission)
    db.session.refresh(submission)
    run = submission.runs[0]
    assert submission.status == "graded" and run.status == "graded", run.message
    assert run.score == 100.0 and run.max_score == 100.0
    # attempt may exceed 1 when a busy host refused a sandbox once (an infrastructure retry).
    assert run.runner == "local" and run.attempt >= 1 and run.assignment_version == 1
    assert run.assignment_hash == world.assignment.content_hash
    assert {s.deliverable.slug: s.score for s in run.scores} == {d.slug: 20.0 for d in world.assignment.deliverables}
    assert len(run.test_results) == len(run.result["deliverables"][0]["tests"]) + sum(
        len(d["tests"]) for d in run.result["deliverables"][1:])
    body = client.get(f"/api/v1/submissions/{submission.id}", headers=world.student.headers).json
    assert body["status"] == "graded" and body["score"] == 100.0 and body["max_score"] == 100.0
    assert [d["id"] for d in body["deliverables"]] == [d.slug for d in world.assignment.deliverables]
    assert "queue_position" not in body


def test_starter_solution_is_graded_with_a_low_score(app: Flask, client: FlaskClient, world: World) -> None:
    """Is an unfinished (starter) solution graded — status graded, a score below full marks, not an error?"""
    submission = submit(client, world, STARTER_SOLUTION.read_bytes())
    run_task(submission)
    db.session.refresh(submission)
    assert submission.status == "graded"
    assert submission.runs[0].score < 100.0


def test_redelivered_task_never_creates_a_second_score(app: Flask, client: FlaskClient, world: World,
                                                       fake_engine: list[Any]) -> None:
    """When the broker delivers the same task twice, is the run graded once and scored once?"""
    fake_engine.append(fake_result())
    submission = submit(client, world)
    first, second = run_task(submission), run_task(submission)
    assert first.result["status"] == "graded"
    assert second.result == {"submission_id": submission.id, "run_id": submission.runs[0].id,
                             "status": "graded", "duplicate": True}
    assert db.session.scalar(select(func.count()).select_from(DeliverableScore)) == 1
    assert db.session.scalar(select(func.count()).select_from(TestResult)) == 3
    assert submission.runs[0].attempt == 1


def test_no_database_transaction_stays_open_while_the_engine_grades(client: FlaskClient, world: World,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """While the engine runs (seconds; minutes with a GPU), is the worker's session out of any transaction, so that
    it holds no locks and no snapshot through a rush?"""
    seen: list[bool] = []

    def engine(manifest: Any, files: dict[str, bytes], runner: Any) -> GradeResult:
        seen.append(db.session().in_transaction())
        return fake_result()

    monkeypatch.setattr(worker.tasks, "run_engine", engine)
    submission = submit(client, world)
    db.session.commit()
    assert run_task(submission).result["status"] == "graded"
    assert seen == [False]


def test_a_grading_stores_its_result_without_loading_the_same_rows_again(app: Flask, client: FlaskClient,
                                                                         world: World,
                                                                         fake_engine: list[Any]) -> None:
    """Does a grading task load each row once (a commit no longer expires what the task loaded), and leave the
    session it shares here as it found it?"""
    fake_engine.append(fake_result())
    submission = submit(client, world)
    db.session.expunge_all()  # as in a worker: the task starts from an empty session
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement.split()[0] + " " + statement.split("\n")[0][:60])

    def control(name: str) -> Any:
        return lambda *_: statements.append(name)

    listeners = [("before_cursor_execute", count)] + [
        (name, control(name.upper())) for name in ("begin", "commit", "rollback")]
    for name, listener in listeners:
        event.listen(db.engine, name, listener)
    try:
        assert run_task(submission).result["status"] == "graded"
    finally:
        for name, listener in listeners:
            event.remove(db.engine, name, listener)
    selects = [s for s in statements if s.startswith("SELECT")]
    # The run (found, then refreshed after the claim's UPDATE), its submission, assignment, deliverables and
    # file, the student (logged), the course's LMS integration and line item: nothing loaded twice.
    assert len(selects) <= 9, "\n".join(statements)
    # Three transactions (there were five): the claim; the manifest's version and the file, committed before the
    # engine runs; the result with its LMS outbox rows (in a savepoint). Then nothing more: the log line's
    # student was loaded before the commit.
    assert statements.count("COMMIT") == 3, "\n".join(statements)
    assert len(statements) <= 23, "\n".join(statements)
    assert db.session().expire_on_commit is True
    db.session.expire_all()
    run = db.session.get(Submission, submission.id).runs[0]
    assert run.status == "graded" and run.score == 12.0 and len(run.test_results) == 3


def test_a_session_that_outlives_a_task_reads_rows_fresh_again(app: Flask, client: FlaskClient, world: World,
                                                               fake_engine: list[Any]) -> None:
    """After an eager task that shared this session, does a row changed elsewhere read as it is now, not as the
    task left it in memory?"""
    fake_engine.append(fake_result())
    submission = submit(client, world)
    submission_id = submission.id
    run_task(submission)
    with db.engine.begin() as other:  # another process's change, behind this session's back
        other.execute(update(Submission).where(Submission.id == submission_id).values(status="error"))
    assert submission.status == "error"


def test_two_deliveries_racing_store_one_score(app: Flask, client: FlaskClient, world: World) -> None:
    """If two deliveries both grade the run, does the unique constraint keep only the first one's score?"""
    submission = submit(client, world)
    run = submission.runs[0]
    assert grading.claim(run, "worker-a")
    assert grading.record_result(run, fake_result(12.0), {"runner": "fake"})
    # The second delivery claimed the run before the first finished, and now tries to store its result.
    run.status = "running"
    db.session.commit()
    assert grading.record_result(run, fake_result(20.0), {"runner": "fake"}) is False
    db.session.refresh(run)
    assert run.score == 12.0 and run.result["score"] == 12.0
    assert [s.score for s in db.session.scalars(select(DeliverableScore))] == [12.0]


def test_unique_constraint_refuses_a_second_score_for_a_run(app: Flask, client: FlaskClient, world: World) -> None:
    """Does the database itself refuse a second score for the same run and deliverable?"""
    submission = submit(client, world)
    run, deliverable = submission.runs[0], world.assignment.deliverables[0]
    db.session.add(DeliverableScore(run=run, deliverable=deliverable, score=1.0, max_score=20.0))
    db.session.commit()
    db.session.add(DeliverableScore(run=run, deliverable=deliverable, score=2.0, max_score=20.0))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


def test_infrastructure_errors_are_retried_then_reported(make_app: Any, fake_engine: list[Any]) -> None:
    """Does an infrastructure error retry (with backoff) GRADER_MAX_RETRIES times, then end in error?"""
    app = make_app(GRADER_MAX_RETRIES=2)
    with app.app_context():
        world = make_world()
        failures: list[dict[str, Any]] = []
        fake_engine.append(InfrastructureError("Docker is down"))
        with submission_failed.connected_to(lambda sender, **kw: failures.append(kw), app):
            submission = submit(app.test_client(), world)
            run_task(submission)
        db.session.refresh(submission)
        run = submission.runs[0]
        assert submission.status == "error" and run.status == "error"
        assert run.attempt == 3  # the first try and two retries
        assert "Docker is down" in run.message and "submit again later" in run.message
        assert failures == [{"submission_id": submission.id, "run_id": run.id, "published": True}]
        assert db.session.scalar(select(func.count()).select_from(DeliverableScore)) == 0


def test_a_retry_after_an_infrastructure_error_can_succeed(app: Flask, client: FlaskClient, world: World,
                                                           fake_engine: list[Any]) -> None:
    """After one infrastructure error, does the retried task grade the submission normally?"""
    fake_engine.extend([InfrastructureError("no sandbox"), fake_result()])
    submission = submit(client, world)
    run_task(submission)
    db.session.refresh(submission)
    assert submission.status == "graded" and submission.runs[0].attempt == 2


def test_a_bug_is_not_retried(app: Flask, client: FlaskClient, world: World, fake_engine: list[Any]) -> None:
    """Does an unexpected exception end the run in error at once (no retry) and still fail the task visibly?"""
    fake_engine.append(ValueError("engine bug"))
    submission = submit(client, world)
    outcome = run_task(submission)
    assert outcome.failed() and isinstance(outcome.result, ValueError)
    db.session.refresh(submission)
    run = submission.runs[0]
    assert submission.status == "error" and run.attempt == 1
    assert "internal error" in run.message and "ValueError" in run.message


def test_a_database_that_went_away_under_a_grading_queues_it_again(app: Flask, client: FlaskClient, world: World,
                                                                  fake_engine: list[Any]) -> None:
    """When the database drops the task's connection (a restart) and answers again by the time the task has failed,
    is the run queued again to be graded, rather than ended in error as "grading failed" (which the recovery test
    saw under load: PostgreSQL crashed mid-burst)?"""
    fake_engine.append(OperationalError("UPDATE grading_run", {}, Exception("server closed the connection")))
    submission = submit(client, world)
    outcome = run_task(submission)
    assert outcome.failed() and isinstance(outcome.result, OperationalError)
    db.session.refresh(submission)
    run = submission.runs[0]
    assert run.status == "queued" and submission.status == "queued", run.message
    assert "the database was unavailable (OperationalError)" in run.message
    fake_engine[:] = [fake_result()]
    run_task(submission)
    db.session.refresh(submission)
    assert submission.status == "graded" and submission.runs[0].attempt == 2


def test_soft_time_limit_ends_the_run_in_error(app: Flask, client: FlaskClient, world: World,
                                               fake_engine: list[Any]) -> None:
    """When grading overruns the task's soft time limit, does the run end in error with a plain message?"""
    fake_engine.append(SoftTimeLimitExceeded())
    submission = submit(client, world)
    run_task(submission)
    db.session.refresh(submission)
    assert submission.status == "error"
    assert "did not finish within" in submission.runs[0].message


def test_graded_signal_is_sent_after_commit(app: Flask, client: FlaskClient, world: World,
                                            fake_engine: list[Any]) -> None:
    """Do subscribers of `submission_graded` hear about a graded run, with the score already stored?"""
    fake_engine.append(fake_result())
    seen: list[tuple[int, float | None]] = []

    def receiver(sender: Flask, submission_id: int, run_id: int, **extra: Any) -> None:
        seen.append((submission_id, db.session.get(GradingRun, run_id).score))

    def broken(sender: Flask, **extra: Any) -> None:
        raise RuntimeError("a buggy subscriber")

    submission = submit(client, world)
    with submission_graded.connected_to(broken, app), submission_graded.connected_to(receiver, app):
        run_task(submission)
    assert seen == [(submission.id, 12.0)]
    db.session.refresh(submission)
    assert submission.status == "graded"  # the broken subscriber changed nothing


def test_students_see_hidden_tests_reduced(app: Flask, client: FlaskClient, world: World,
                                           fake_engine: list[Any]) -> None:
    """Does a student see hidden tests only by name and points (after-due tests only after the due date),
    while the instructor sees everything?"""
    fake_engine.append(fake_result())
    submission = submit(client, world)
    run_task(submission)
    mine = client.get(f"/api/v1/submissions/{submission.id}", headers=world.student.headers).json
    tests = {t["name"]: t for t in mine["deliverables"][0]["tests"]}
    assert tests["test_visible"]["output"] == "ok"
    assert tests["test_hidden"] == {**tests["test_hidden"], "status": "hidden", "output": ""}
    assert tests["test_hidden"]["max_score"] == 5.0
    assert tests["test_later"]["status"] == "hidden"
    teacher = client.get(f"/api/v1/submissions/{submission.id}", headers=world.instructor.headers).json
    hidden = {t["name"]: t for t in teacher["deliverables"][0]["tests"]}["test_hidden"]
    assert hidden["output"] == "secret expected value 42"
    world.assignment.due_at = datetime.now(UTC) - timedelta(hours=1)
    db.session.commit()
    later = client.get(f"/api/v1/submissions/{submission.id}", headers=world.student.headers).json
    tests = {t["name"]: t for t in later["deliverables"][0]["tests"]}
    assert tests["test_later"]["status"] == "passed" and tests["test_hidden"]["status"] == "hidden"


def test_queue_position_counts_earlier_queued_runs_on_the_same_queue(app: Flask, client: FlaskClient,
                                                                     world: World) -> None:
    """While queued, does each submission report its 1-based place in its queue, moving up as others start?"""
    ids = [submit(client, world).id for _ in range(3)]
    positions = [client.get(f"/api/v1/submissions/{i}", headers=world.student.headers).json["queue_position"]
                 for i in ids]
    assert positions == [1, 2, 3]
    grading.claim(db.session.get(Submission, ids[0]).runs[0], "w")
    body = client.get(f"/api/v1/submissions/{ids[2]}", headers=world.student.headers).json
    assert body["queue_position"] == 2
    first = client.get(f"/api/v1/submissions/{ids[0]}", headers=world.student.headers).json
    assert first["status"] == "running" and "queue_position" not in first
