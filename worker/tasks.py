"""Every Celery task: grading, the LMS deliveries and the periodic jobs. They take ids, never ORM objects, and
are safe to run twice for the same id.

The worker side of the queue: this module imports the service (models, services, the LMS senders) and the
engine; the service never imports it, and sends these tasks by name (`grader.celery_app`).
"""

from __future__ import annotations

import logging
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from flask import current_app
from sqlalchemy import update
from sqlalchemy.exc import InterfaceError, OperationalError

import worker.availability  # (a worker that cannot grade stops taking gradings: its hooks connect now)
import worker.process  # noqa: F401  (the worker's signal hooks connect when the tasks load)
from grader import celery_app as names
from grader.celery_app import AppContextTask
from grader.config import resolve_runner
from grader.database import db, loaded_once
from grader.models import GradingRun, database_now
from grader.services import grading
from grader.services.assignments import apply_manifest, load_manifest
from grader.services.storage import StorageError, store
from worker.engine.errors import InfrastructureError
from worker.engine.manifest import Manifest
from worker.engine.result import GradeResult
from worker.engine.runners.base import Runner

log = logging.getLogger(__name__)
MAX_BACKOFF = 600  # seconds; stays far below the broker's visibility timeout

_runners: dict[str, Runner] = {}


def run_engine(manifest: Manifest, files: dict[str, bytes], runner: Runner) -> GradeResult:
    """Call the grading engine (one seam, so tests can watch or replace it)."""
    from worker.engine.grade import grade
    from worker.engine.judge.launch import shared_judge

    # The warm judge: torch and pytest are loaded once per worker process, and the next sandbox starts early.
    return grade(manifest, files, runner=runner, judge=shared_judge())


def get_runner() -> Runner:
    """This worker process's runner (GRADER_RUNNER: docker, local, or auto = docker when it answers)."""
    from worker.engine.runners import make_runner

    name = resolve_runner(current_app.config["GRADER_RUNNER"], announce=False)
    if name not in _runners:
        _runners[name] = make_runner(name)
    return _runners[name]


def backoff(retries: int, base: int) -> float:
    """Exponential backoff with jitter: base, 2·base, 4·base … capped at MAX_BACKOFF seconds."""
    delay = min(MAX_BACKOFF, base * 2**retries)
    return delay * random.uniform(0.8, 1.2)


# The database went away under a task (a restart, a crash, a failover): ours, never the student's.
DATABASE_GONE = (OperationalError, InterfaceError)


class GradeTask(AppContextTask):
    """Marks the run as errored when the task dies in a way the task body cannot see (hard time limit); queues it
    again when the database went away under the task."""

    def on_failure(self, exc: Any, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        """Record the failure on the run (in an app context of its own if needed)."""
        flask_app = getattr(self.app, "flask_app", None)
        if flask_app is None or not args:
            return
        with flask_app.app_context():
            run = grading.find_run(int(args[0]), kwargs.get("run_id"))
            if run is None:
                return
            if isinstance(exc, DATABASE_GONE):
                # Queued again now that the database answers (it ended the run in error before, when it came back
                # between the task's failure and this). Where it is still away this raises, and the run, left
                # running without a heartbeat, is queued again by the liveness sweep.
                if run.status == "running":
                    from grader.services import recovery

                    recovery.requeue(run, f"the database was unavailable ({type(exc).__name__})")
                return
            grading.record_error(run, f"grading failed: {type(exc).__name__}")


# ignore_result: outcomes live in SQL; waiting on a result store would only add a way for uploads to hang.
@shared_task(bind=True, base=GradeTask, name=names.GRADE_SUBMISSION, acks_late=True,
             reject_on_worker_lost=True, ignore_result=True)
def grade_submission(self: Task, submission_id: int, run_id: int | None = None) -> dict[str, Any]:
    """Grade one run of a submission (its first run by default) and store the result exactly once."""
    # What another process may change under a running grading is never read from memory: the claim decides by a
    # conditional UPDATE and refreshes the run, a second delivery's result is refused by the unique (run,
    # deliverable) constraint, the error paths refresh the run first (`record_error`), and nothing changes
    # whether a running run is published (a regrade is published only once all its runs have finished).
    with loaded_once():
        return _grade_run(self, submission_id, run_id)


def _grade_run(self: Task, submission_id: int, run_id: int | None) -> dict[str, Any]:
    run = grading.find_run(submission_id, run_id)
    if run is None:
        log.warning("submission %s run %s no longer exists; nothing to grade", submission_id, run_id)
        return {"submission_id": submission_id, "status": "missing"}
    if not grading.claim(run, self.request.hostname):
        return {"submission_id": submission_id, "run_id": run.id, "status": run.status, "duplicate": True}
    try:
        with heartbeat(run.id):
            result, facts = _grade(run)
    except InfrastructureError as exc:
        return _retry_or_fail(self, run, exc)
    except DATABASE_GONE:
        db.session.rollback()
        raise  # not an internal error: the run is queued again (`GradeTask.on_failure`)
    except SoftTimeLimitExceeded:
        limit = current_app.config["GRADER_TASK_SOFT_TIME_LIMIT"]
        grading.record_error(run, f"grading did not finish within {limit} s; an instructor was notified")
        return {"submission_id": submission_id, "run_id": run.id, "status": "error"}
    except Exception as exc:
        log.exception("grading submission %s failed", submission_id)
        db.session.rollback()
        grading.record_error(run, f"internal error while grading ({type(exc).__name__}); not your fault")
        raise
    grading.record_result(run, result, facts)
    return {"submission_id": submission_id, "run_id": run.id, "status": run.status, "score": run.score}


def _grade(run: GradingRun) -> tuple[GradeResult, dict[str, Any]]:
    submission = run.submission
    manifest = load_manifest(submission.assignment.slug)
    # Grade with the tests as they are now, and record which version that was.
    apply_manifest(submission.assignment, manifest)
    run.assignment_hash = submission.assignment.content_hash
    run.assignment_version = submission.assignment.version
    try:
        data = store().get(submission.sha256)
    except StorageError as exc:
        raise InfrastructureError(str(exc)) from exc
    # No transaction stays open while the engine runs (seconds, minutes with a GPU): an idle one would hold
    # back PostgreSQL's vacuum and the locks of what it read, on every slot, all through a deadline rush.
    db.session.commit()
    runner = get_runner()
    result = run_engine(manifest, {submission.original_name: data}, runner)
    return result, runner.describe()


def _retry_or_fail(task: Task, run: GradingRun, exc: InfrastructureError) -> dict[str, Any]:
    retries = task.request.retries
    if retries >= int(current_app.config["GRADER_MAX_RETRIES"]):
        grading.record_error(run, f"grading is unavailable right now ({exc}); please submit again later")
        return {"submission_id": run.submission_id, "run_id": run.id, "status": "error"}
    delay = backoff(retries, int(current_app.config["GRADER_RETRY_BACKOFF"]))
    log.warning("submission %s: %s; retry %d in %.0f s", run.submission_id, exc, retries + 1, delay)
    # not_before tells the outbox sweep that the countdown message is the live one until then.
    grading.requeue(run, f"waiting to retry: {exc}", not_before=database_now(db.session) + timedelta(seconds=delay))
    raise task.retry(exc=exc, countdown=delay, max_retries=None)


@contextmanager
def heartbeat(run_id: int) -> Iterator[None]:
    """Refresh the run's heartbeat every GRADER_HEARTBEAT_INTERVAL seconds while the block runs.

    A thread of this process writes it, so it stops exactly when this process dies (a killed pool child, a
    host gone): then the liveness sweep sees the run go stale and queues it again.
    """
    interval = float(current_app.config["GRADER_HEARTBEAT_INTERVAL"])
    engine = db.engine
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            try:
                with engine.begin() as connection:
                    connection.execute(update(GradingRun)
                                       .where(GradingRun.id == run_id, GradingRun.status == "running")
                                       .values(heartbeat_at=database_now(connection)))
            except Exception as exc:  # a database blip: the next beat tries again
                log.warning("heartbeat of run %s failed: %s", run_id, type(exc).__name__)

    thread = threading.Thread(target=beat, name=f"heartbeat-{run_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


# --- periodic jobs (scheduled by `grader beat`; see grader.config.beat_schedule) ------------------------------
@shared_task(base=AppContextTask, name=names.RECOVER_RUNS, ignore_result=True)
def recover_runs() -> dict[str, int]:
    """Queue again runs whose worker died, and publish queued runs the broker has no message for."""
    from grader.services import recovery

    return {"requeued": recovery.requeue_lost(), "published": recovery.publish_pending()}


@shared_task(base=AppContextTask, name=names.LMS_DUE, ignore_result=True)
def lms_due() -> dict[str, int]:
    """Send LMS webhook deliveries and LTI score publications whose next attempt is due."""
    from grader.lms import ags, outbound

    return {"deliveries": outbound.send_due(), "lost_deliveries": outbound.sweep(), "scores": ags.send_due()}


@shared_task(base=AppContextTask, name=names.PURGE_RECEIPTS, ignore_result=True)
def purge_receipts() -> int:
    """Forget inbound webhook receipts older than their retention."""
    from grader.lms import receipts

    return receipts.purge_receipts()


# --- LMS deliveries (queued by grader.lms.outbound and grader.lms.ags, by name) ----------------------------------
@shared_task(base=AppContextTask, name=names.DELIVER_EVENT, acks_late=True, ignore_result=True)
def deliver_event(delivery_id: int, expected_attempts: int = 0) -> None:
    """Attempt an outbound webhook delivery; a short retry wait rides on a countdown (`outbound.deliver`)."""
    from grader.lms import outbound

    outbound.deliver(delivery_id, expected_attempts)


@shared_task(base=AppContextTask, name=names.PUBLISH_SCORE, acks_late=True, ignore_result=True)
def publish_score(score_id: int, expected_attempts: int = 0) -> None:
    """Publish an LTI AGS score to the platform, retrying with backoff (`ags.publish`)."""
    from grader.lms import ags

    ags.publish(score_id, expected_attempts)


SCRATCH_PREFIXES = ("grader-run-", "grader-judge-", "grader-sbx-")


@shared_task(base=AppContextTask, name=names.CLEANUP_HOST, ignore_result=True)
def cleanup_host_task() -> dict[str, int]:
    """Remove this host's leftovers (beat runs it in its own process; each worker also runs it on a timer)."""
    return cleanup_host()


def cleanup_host(scratch_age: float = 3600.0, container_age_minutes: float = 30.0) -> dict[str, int]:
    """This host's leftovers of killed gradings: sandbox containers with no owner, judge scratch folders."""
    removed = 0
    cutoff = time.time() - scratch_age
    for path in Path(tempfile.gettempdir()).iterdir():
        try:
            if (path.name.startswith(SCRATCH_PREFIXES) and path.is_dir() and not path.is_symlink()
                    and path.stat().st_mtime < cutoff):
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
        except OSError:
            continue
    containers = 0
    if shutil.which("docker") or Path("/var/run/docker.sock").exists():
        try:
            from worker.engine.runners.docker import cleanup_orphans

            containers = cleanup_orphans(max_age_minutes=container_age_minutes)
        except Exception as exc:  # no Docker here, or it is not answering: nothing of ours to remove
            log.info("orphan container cleanup skipped: %s", exc)
    return {"scratch": removed, "containers": containers}
