"""The recovery sweeps and `grader submission requeue`, on the embedded stack (SQLite, filesystem broker):
which runs count as lost, what is re-queued, and that a second delivery never grades a run twice."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient

from grader.cli import cli
from grader.extensions import db
from grader.models import GradingRun, Submission, utcnow
from grader.services import grading, recovery
from tests.conftest import REFERENCE_SOLUTION, World, upload


def queued_messages(app: Flask) -> int:
    """Messages waiting in the embedded broker."""
    folder = Path(app.config["CELERY"]["broker_transport_options"]["data_folder_in"])
    return len([p for p in folder.iterdir() if p.name.endswith(".msg")])


def running_run(client: FlaskClient, world: World, seconds_since_heartbeat: float) -> GradingRun:
    """An uploaded submission whose run a worker claimed and last heartbeat that long ago."""
    response = upload(client, "autograd", REFERENCE_SOLUTION.read_bytes(), headers=world.student.headers)
    run = db.session.get(Submission, response.json["id"]).runs[0]
    assert grading.claim(run, "worker-a@host")
    run.heartbeat_at = utcnow() - timedelta(seconds=seconds_since_heartbeat)
    db.session.commit()
    return run


def test_a_run_with_a_live_heartbeat_is_not_taken_over(app: Flask, client: FlaskClient, world: World) -> None:
    """While its worker heartbeats, is a running run left alone by the sweep and refused to a second delivery?"""
    run = running_run(client, world, seconds_since_heartbeat=1)
    assert recovery.requeue_lost() == 0
    assert grading.claim(run, "worker-b@host") is False
    assert run.status == "running" and run.worker == "worker-a@host" and run.attempt == 1


def test_a_run_whose_worker_died_is_queued_again_with_its_attempt(app: Flask, client: FlaskClient,
                                                                   world: World) -> None:
    """When a run's heartbeat is older than the timeout, does the sweep queue it again, publish it, keep the
    attempt count, and tell the student why?"""
    run = running_run(client, world, seconds_since_heartbeat=app.config["GRADER_HEARTBEAT_TIMEOUT"] + 5)
    before = queued_messages(app)
    assert recovery.requeue_lost() == 1
    db.session.refresh(run)
    assert run.status == "queued" and run.submission.status == "queued" and run.attempt == 1
    assert "worker grading it stopped" in run.message and run.enqueued_at is not None
    assert queued_messages(app) == before + 1
    assert grading.claim(run, "worker-b@host") and run.attempt == 2


def test_a_run_that_keeps_killing_its_worker_ends_in_error(app: Flask, client: FlaskClient, world: World) -> None:
    """After GRADER_MAX_ATTEMPTS lost attempts, does the sweep end the run in error instead of looping?"""
    run = running_run(client, world, seconds_since_heartbeat=600)
    run.attempt = app.config["GRADER_MAX_ATTEMPTS"]
    db.session.commit()
    assert recovery.requeue_lost() == 0
    db.session.refresh(run)
    assert run.status == "error" and "interrupted" in run.message


def test_the_outbox_sends_runs_the_broker_never_got(app: Flask, client: FlaskClient, world: World) -> None:
    """Is a queued run never handed to the broker published by the outbox sweep, once?"""
    response = upload(client, "autograd", REFERENCE_SOLUTION.read_bytes(), headers=world.student.headers)
    run = db.session.get(Submission, response.json["id"]).runs[0]
    run.enqueued_at = None
    db.session.commit()
    before = queued_messages(app)
    assert recovery.publish_pending() == 1
    assert recovery.publish_pending() == 0
    assert queued_messages(app) == before + 1


def test_requeue_dry_run_lists_and_changes_nothing(app: Flask, client: FlaskClient, world: World) -> None:
    """Does `grader submission requeue --stuck --dry-run` list the lost run and leave it as it is, and does the
    real command then queue it again?"""
    run = running_run(client, world, seconds_since_heartbeat=600)
    runner = app.test_cli_runner()
    dry = runner.invoke(cli, ["submission", "requeue", "--stuck", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert dry.output.startswith(f"would requeue\tsubmission {run.submission_id}\trun 1\tattempt 1\trunning")
    db.session.refresh(run)
    assert run.status == "running"
    done = runner.invoke(cli, ["submission", "requeue", "--stuck"])
    assert done.exit_code == 0 and done.output.startswith("requeued\t"), done.output
    db.session.refresh(run)
    assert run.status == "queued"


def test_requeue_by_id_skips_graded_and_revives_errors(app: Flask, client: FlaskClient, world: World) -> None:
    """Does `grader submission requeue ID` queue an errored run again but refuse a graded one (regrade it)?"""
    from tests.service.test_service_tasks import fake_result

    errored = running_run(client, world, 0)
    grading.record_error(errored, "sandbox unavailable")
    graded = running_run(client, world, 0)
    grading.record_result(graded, fake_result(), {"runner": "fake"})
    output = app.test_cli_runner().invoke(
        cli, ["submission", "requeue", str(errored.submission_id), str(graded.submission_id)]).output
    assert f"requeued\tsubmission {errored.submission_id}\t" in output
    assert f"skip\tsubmission {graded.submission_id}\trun 1\tgraded" in output
    db.session.refresh(errored)
    assert errored.status == "queued" and errored.finished_at is None
