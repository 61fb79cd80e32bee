"""What beat's job records say, and when the queue panel's warning about the recovery sweeps shows
(`grader.services.periodic`; tests/service/test_service_recovery.py kills a real beat)."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask

from grader import celery_app as tasks
from grader.extensions import db
from grader.models import database_now
from grader.models.periodic import PeriodicJob
from grader.services.periodic import record_run, sweep_warning
from grader.services.submissions import submit
from tests.conftest import World


def test_a_job_s_record_keeps_its_last_success_through_a_failure(app: Flask) -> None:
    """Does a failed run keep the time of the last success and the error, and a later success clear the error?"""
    record_run(tasks.RECOVER_RUNS, None)
    first = db.session.get(PeriodicJob, tasks.RECOVER_RUNS)
    assert first is not None and first.last_ok_at == first.last_run_at and first.last_error is None
    ok_at = first.last_ok_at
    record_run(tasks.RECOVER_RUNS, "OperationalError: " + "x" * 1000)
    failed = db.session.get(PeriodicJob, tasks.RECOVER_RUNS)
    assert failed is not None and failed.last_ok_at == ok_at and failed.last_error is not None
    assert failed.last_error.startswith("OperationalError: ") and len(failed.last_error) == 500
    record_run(tasks.RECOVER_RUNS, None)
    again = db.session.get(PeriodicJob, tasks.RECOVER_RUNS)
    assert again is not None and again.last_error is None and again.last_ok_at is not None
    assert again.last_ok_at >= ok_at


def test_the_sweep_warning_shows_only_while_runs_wait_on_a_late_sweep(app: Flask, world: World) -> None:
    """Is there no warning with nothing waiting, or with a sweep that succeeded lately; and one that says why
    (never ran, failing, or how long ago it last ran) once a run has waited longer than three sweep intervals?"""
    assert sweep_warning() is None  # nothing waits: whatever beat does, nothing is stranded
    run = submit(world.student.user, world.assignment, "solution.py", b"x = 1\n").runs[0]
    db.session.commit()
    assert sweep_warning() is None  # a run that waited seconds: no beat has had to act yet
    run.queued_at = database_now(db.session) - timedelta(minutes=5)
    db.session.commit()
    never = sweep_warning()
    assert never is not None and never.startswith("The recovery sweeps have never run here: start grader beat")
    assert sweep_warning([world.assignment.id + 1000]) is None  # another assignment's page: nothing of its own

    record_run(tasks.RECOVER_RUNS, None)
    assert sweep_warning() is None
    record_run(tasks.RECOVER_RUNS, "RuntimeError: boom")
    assert sweep_warning() is None  # it succeeded lately: one failure is not yet a stopped sweep

    job = db.session.get(PeriodicJob, tasks.RECOVER_RUNS)
    assert job is not None
    job.last_ok_at = database_now(db.session) - timedelta(minutes=10)
    db.session.commit()
    assert (sweep_warning() or "").startswith("The recovery sweeps fail (RuntimeError: boom); until they run")
    job.last_run_at = job.last_ok_at
    db.session.commit()
    assert (sweep_warning() or "").startswith(
        "The recovery sweeps last ran 10 min ago (every 10 s): is grader beat running? Until they run")
