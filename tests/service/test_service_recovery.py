"""Fault injection with real parts: a Celery worker process, beat, a Redis server of the test's own on another
port, and PostgreSQL (the shared server, or one of the test's own that it crashes). Each test breaks something the
way a deadline night does and asserts every submission is graded exactly once (one run, one set of score rows)
within a bound, with a truthful status all along.

Liveness settings are shortened (tests.support.recovery_support.FAST_RECOVERY: heartbeat timeout 8 s, sweeps every 2 s),
so recovery here takes seconds; the README gives the production figures (30 s timeout, 10 s sweeps).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select

from grader.extensions import db
from tests.conftest import REFERENCE_SOLUTION, REPO, fresh_postgres_database, upload
from tests.support.docker_engine import docker_engine_down, restart_docker_engine
from tests.support.lms_helpers import Receiver, verified
from tests.support.postgres_server import postgres_server
from tests.support.recovery_support import (
    FAST_RECOVERY,
    Watcher,
    assert_graded_exactly_once,
    run_rows,
)
from tests.support.service_stack import COMMIT_HOOKS, Stack, logs, running_stack, skewed_clock, wait_for

# Tests that stop or restart this machine's Docker engine, which every other test uses: under CI, or on request.
stops_docker = pytest.mark.skipif(
    not (os.environ.get("CI") or os.environ.get("GRADER_TEST_RESTART_DOCKER")),
    reason="stops this machine's Docker engine: runs under CI, or with GRADER_TEST_RESTART_DOCKER=1")
BOUND = 150  # seconds for the whole batch to be graded after the fault is repaired (a busy 2-core CI host)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """The stack on a fresh database of the shared PostgreSQL server."""
    with fresh_postgres_database() as database, running_stack(tmp_path, database) as running:
        yield running


def test_a_worker_host_killed_mid_grade_loses_nothing(stack: Stack) -> None:
    """When every process of a worker is SIGKILLed mid-grade and a new worker starts, is each submission graded
    exactly once within seconds (not the broker's hour), the killed ones on a second attempt?"""
    watcher = Watcher(stack.app, stack.world.student.headers)
    first = stack.worker("worker-a")
    stack.beat()
    ids = stack.upload(3, watcher)
    wait_for(lambda: "running" in stack.statuses(ids), 120, "grading")
    time.sleep(1.0)  # well into the grading
    first.signal_group(signal.SIGKILL)
    first.process.wait(timeout=10)
    killed_at = time.monotonic()
    interrupted = [i for i, status in zip(ids, stack.statuses(ids), strict=True) if status == "running"]
    stack.worker("worker-b")
    watcher.wait_all_graded(BOUND)
    recovery = max(watcher.finished_at[i] for i in interrupted) - killed_at if interrupted else 0.0
    print(f"\nkilled worker: interrupted {len(interrupted)}, all graded {recovery:.1f} s after the kill")
    watcher.assert_truthful()
    assert_graded_exactly_once(stack.app, ids)
    attempts = {i: attempt for i, attempt, _ in run_rows(stack.app, ids)}
    assert interrupted and all(attempts[i] == 2 for i in interrupted), (attempts, logs(stack))
    # What the student saw of an interrupted one is part of queued, running, queued again, running, graded (the
    # second "queued" may pass between two polls: a forked sandbox grades in about a second).
    story = ["queued", "running", "queued", "running", "graded"]
    for i in interrupted:
        seen = iter(story)
        assert all(status in seen for status in watcher.seen[i]), watcher.seen[i]


def test_a_redis_restart_with_work_queued_loses_nothing(stack: Stack) -> None:
    """When Redis restarts (keeping nothing) while submissions wait in the queue, are they all re-published
    from the database and graded exactly once?"""
    watcher = Watcher(stack.app, stack.world.student.headers)
    ids = stack.upload(3, watcher)  # no worker yet: the messages wait in Redis
    stack.redis.stop()
    stack.redis.start()
    import redis

    assert redis.Redis.from_url(stack.redis.url).llen("cpu") == 0  # the queue is gone
    started = time.monotonic()
    stack.beat()
    stack.worker()
    elapsed = watcher.wait_all_graded(BOUND)
    print(f"\nredis restart: {len(ids)} re-published and graded in {time.monotonic() - started:.1f} s "
          f"(watched {elapsed:.1f} s)")
    watcher.assert_truthful()
    assert_graded_exactly_once(stack.app, ids)


def test_uploads_while_redis_is_down_are_accepted_then_graded(stack: Stack) -> None:
    """With Redis down (broker and rate limiter), is an upload accepted (202) with a truthful "queued; grading
    starts when the queue is back", and graded exactly once when Redis returns?"""
    watcher = Watcher(stack.app, stack.world.student.headers)
    stack.worker()
    stack.beat()
    stack.redis.stop()
    started = time.monotonic()
    ids = stack.upload(3, watcher)
    upload_seconds = time.monotonic() - started
    watcher.poll()
    assert all(watcher.seen[i] == ["queued"] for i in ids)
    assert all(watcher.messages[i] == {"queued; grading starts when the queue is back"} for i in ids)
    time.sleep(3)
    stack.redis.start()
    back = time.monotonic()
    watcher.wait_all_graded(BOUND)
    print(f"\nredis down: 3 uploads took {upload_seconds:.1f} s (202 each); graded "
          f"{max(watcher.finished_at.values()) - back:.1f} s after Redis returned")
    watcher.assert_truthful()
    assert_graded_exactly_once(stack.app, ids)


def test_a_worker_keeps_reconnecting_through_a_redis_outage_longer_than_celery_s_100_tries(stack: Stack) -> None:
    """Does a worker whose Redis stays down past Celery's default limit of 100 reconnection tries (about 46 minutes;
    its waits between tries are cut to 0.05 s here) keep trying, rather than exit, and connect again once Redis is
    back?"""
    pythonpath = os.pathsep.join(filter(None, [str(COMMIT_HOOKS), stack.env.get("PYTHONPATH")]))
    worker = stack.worker(PYTHONPATH=pythonpath, GRADER_TEST_BROKER_RETRY_SECONDS="0.05")
    stack.redis.stop()
    # Celery numbers each try "(N/limit)". With the default limit, the 100th failed try ends the worker with
    # "Unrecoverable error" (its exit status 0, which a supervisor restarting on failure takes for a clean stop).
    gave_up = "Unrecoverable error"
    wait_for(lambda: "(101/" in worker.output() or gave_up in worker.output(), 120, "a 101st try")
    assert gave_up not in worker.output() and worker.process.poll() is None, logs(stack)
    stack.redis.start()
    wait_for(lambda: worker.output().count("Connected to redis://") == 2, 60, "the worker connecting again")
    assert worker.process.poll() is None, logs(stack)


def test_a_worker_stopped_during_a_burst_loses_nothing(stack: Stack) -> None:
    """When a worker's whole process group gets SIGTERM in the middle of a burst, and another worker starts,
    is every submission graded exactly once?"""
    watcher = Watcher(stack.app, stack.world.student.headers)
    first = stack.worker("worker-a")
    stack.beat()
    ids = stack.upload(4, watcher)
    wait_for(lambda: "running" in stack.statuses(ids), 120, "grading")
    time.sleep(1.0)
    first.signal_group(signal.SIGTERM)
    try:
        first.process.wait(timeout=60)
    except Exception:
        first.signal_group(signal.SIGKILL)
    stopped = time.monotonic()
    stack.worker("worker-b")
    watcher.wait_all_graded(BOUND)
    print(f"\nworker stopped in a burst: all {len(ids)} graded "
          f"{max(watcher.finished_at.values()) - stopped:.1f} s after it stopped")
    watcher.assert_truthful()
    assert_graded_exactly_once(stack.app, ids)


def test_a_worker_whose_clock_runs_behind_keeps_its_gradings(stack: Stack) -> None:
    """When a worker host's clock runs two minutes behind the database's and the sweeping host's (libfaketime in
    the worker's processes), does the liveness sweep leave its gradings alone: each graded exactly once, on its
    first attempt, never shown queued again?"""
    watcher = Watcher(stack.app, stack.world.student.headers)
    stack.worker("worker-behind", **skewed_clock("-120s"))
    stack.beat()
    ids = stack.upload(4, watcher)
    watcher.wait_all_graded(BOUND)
    watcher.assert_truthful()
    assert_graded_exactly_once(stack.app, ids)
    assert [attempt for _, attempt, _ in run_rows(stack.app, ids)] == [1] * len(ids), logs(stack)
    for i in ids:  # what the student saw: part of queued, running, graded (never queued again)
        story = iter(["queued", "running", "graded"])
        assert all(status in story for status in watcher.seen[i]), watcher.seen[i]
    assert "queued again" not in (stack.tmp / "beat.log").read_text(), logs(stack)


def test_a_worker_killed_right_after_storing_a_grade_still_tells_the_lms(stack: Stack) -> None:
    """When the worker's process is SIGKILLed right after the commit that stores a grade, before it queues the
    LMS's webhook, is that `submission.graded` event already stored, and does the LMS get it once, signed?"""
    from grader.lms import integrations
    from grader.models.lms import LmsDelivery

    mark = stack.tmp / "killed-after-commit"
    with Receiver() as receiver:
        _, secrets = integrations.add_integration("canvas", "DEMO101", receiver.url)
        pythonpath = os.pathsep.join(filter(None, [str(COMMIT_HOOKS), stack.env.get("PYTHONPATH")]))
        stack.worker("worker-a", PYTHONPATH=pythonpath, GRADER_TEST_DIE_AFTER_OUTBOX=str(mark))
        watcher = Watcher(stack.app, stack.world.student.headers)
        ids = stack.upload(1, watcher)
        wait_for(mark.exists, 120, "the worker's death right after storing the grade")
        # What any other process finds now: the grade, and its event waiting to leave (nothing queued it).
        assert stack.statuses(ids) == ["graded"], logs(stack)
        db.session.remove()
        assert [d.status for d in db.session.scalars(select(LmsDelivery))] == ["pending"]
        assert receiver.received == []
        stack.beat()  # its periodic LMS poll sends what is due
        wait_for(lambda: receiver.received, 60, "the webhook after the kill")
        time.sleep(3 * float(FAST_RECOVERY["GRADER_SWEEP_INTERVAL"]))  # more polls: no second delivery
    assert len(receiver.received) == 1, receiver.received
    event = verified(receiver.received[0], secrets.outbound or "")
    assert event["type"] == "submission.graded" and event["data"]["score"] == 100.0
    assert_graded_exactly_once(stack.app, ids)
    killed = mark.read_text()  # the pid that died: a pool process of the worker, as Celery saw it
    assert f"pid:{killed} exited with 'signal 9 (SIGKILL)'" in (stack.tmp / "worker-a.log").read_text()


def test_a_database_crash_during_a_burst_loses_nothing(tmp_path: Path) -> None:
    """When PostgreSQL crashes mid-burst (every connection cut) and comes back seconds later, is an upload
    meanwhile refused with a 503 that stores nothing, and is every accepted submission graded exactly once?"""
    from grader.models import Submission

    with postgres_server() as database, running_stack(tmp_path, database.url) as stack:
        watcher = Watcher(stack.app, stack.world.student.headers)
        stack.worker("worker-a")
        stack.beat()
        ids = stack.upload(4, watcher)
        wait_for(lambda: "running" in stack.statuses(ids), 120, "grading")
        database.crash()
        crashed = time.monotonic()
        refused = upload(stack.app.test_client(), "autograd", REFERENCE_SOLUTION.read_bytes(),
                         headers=stack.world.student.headers)
        assert refused.status_code == 503 and refused.json["error"] == "unavailable", refused.json
        time.sleep(4)  # the worker goes on grading meanwhile, with nowhere to store what it finds
        database.start()
        ids += stack.upload(2, watcher)
        watcher.wait_all_graded(BOUND)
        print(f"\ndatabase crash: all {len(ids)} graded {max(watcher.finished_at.values()) - crashed:.1f} s "
              "after it")
        watcher.assert_truthful()
        assert_graded_exactly_once(stack.app, ids)
        with stack.app.app_context():
            assert db.session.scalar(select(func.count()).select_from(Submission)) == len(ids), logs(stack)
            db.session.remove()


@stops_docker
def test_a_docker_restart_mid_burst_loses_nothing(tmp_path: Path, docker_ready: bool) -> None:
    """When the worker host's Docker engine restarts mid-burst (every sandbox zygote container stopped with it),
    is every submission graded exactly once and in full once the engine is back, none marked as the student's
    crash?"""
    assert docker_ready
    with fresh_postgres_database() as database, running_stack(tmp_path, database, GRADER_RUNNER="docker") as stack:
        watcher = Watcher(stack.app, stack.world.student.headers)
        stack.worker("worker-a")
        stack.beat()
        ids = stack.upload(8, watcher)
        wait_for(lambda: "running" in stack.statuses(ids), 120, "grading")
        stopped = time.monotonic()
        away = restart_docker_engine(down=3, log=tmp_path / "dockerd.log")
        watcher.wait_all_graded(BOUND)
        retried = sum(1 for _, attempt, _ in run_rows(stack.app, ids) if attempt > 1)
        print(f"\ndocker restart: the engine away {away:.1f} s; all {len(ids)} graded "
              f"{max(watcher.finished_at.values()) - stopped:.1f} s after it stopped, {retried} on a later attempt")
        watcher.assert_truthful()
        assert_graded_exactly_once(stack.app, ids)


@stops_docker
def test_a_worker_whose_docker_engine_stays_down_leaves_its_gradings_to_one_that_can_grade(
        tmp_path: Path, docker_ready: bool) -> None:
    """When one worker's Docker engine stops mid-burst and stays down longer than a grading's retries last, while
    another worker (local runner) is up, is every upload graded in full, none ending in error and none graded on
    the host's own Python by the worker that started on Docker, and does that worker take gradings again once its
    engine is back?"""
    assert docker_ready
    # `auto`, as `grader serve` runs: Docker answers when the worker starts, so it is a docker worker.
    with fresh_postgres_database() as database, running_stack(tmp_path, database, GRADER_RUNNER="auto") as stack:
        watcher = Watcher(stack.app, stack.world.student.headers)
        on_docker = stack.worker("worker-docker", GRADER_RUNNER_CHECK_INTERVAL="1")
        local = stack.worker("worker-local", GRADER_RUNNER="local")
        stack.beat()
        ids = stack.upload(6, watcher)
        wait_for(lambda: "running" in stack.statuses(ids), 120, "grading")
        with docker_engine_down(tmp_path / "dockerd.log") as hold:
            ids += stack.upload(6, watcher)
            during = stack.panel_once_paused(on_docker)
            hold(40)  # longer than a grading's retries last here (backoff 1 s doubling, 5 retries: ~31 s)
        # The instructor sees which worker stopped taking gradings, and why; nothing is stranded.
        assert "Workers online</dt><dd>2 (1 taking gradings)" in during, during
        assert f"-{on_docker.process.pid}@" in during and "its docker runner cannot grade" in during, during
        assert "No online worker" not in during, during
        watcher.wait_all_graded(BOUND)
        watcher.assert_truthful()
        assert_graded_exactly_once(stack.app, ids)
        marker = f"-{on_docker.process.pid}@"
        runners = {run_id: (worker, runner) for run_id, worker, runner in runner_rows(stack.app, ids)}
        assert all(runner == "docker" for worker, runner in runners.values() if marker in worker), runners
        assert "stopped taking gradings" in on_docker.output(), logs(stack)

        local.stop()  # only the docker worker is left: it must take gradings again
        more = stack.upload(2, watcher)
        watcher.wait_all_graded(BOUND)
        assert_graded_exactly_once(stack.app, more)
        assert [(marker in worker, runner) for _, worker, runner in runner_rows(stack.app, more)] == \
            [(True, "docker")] * 2, logs(stack)
        assert "takes gradings again" in on_docker.output(), logs(stack)


def runner_rows(app: Flask, submission_ids: list[int]) -> list[tuple[int, str, str]]:
    """(run id, worker, runner) of each submission's run."""
    from grader.models import Submission

    with app.app_context():
        rows = [(s.runs[0].id, s.runs[0].worker or "", s.runs[0].runner or "")
                for s in (db.session.get(Submission, i) for i in submission_ids) if s is not None]
        db.session.remove()
    return rows


@stops_docker
def test_with_the_only_worker_s_docker_engine_down_longer_than_the_retries_last_uploads_wait_and_are_graded(
        tmp_path: Path, docker_ready: bool) -> None:
    """When the Docker engine of the deployment's only worker stops and stays down longer than a grading's retries
    last (a one-host deployment at a deadline), do the uploads wait, shown as queued, and is every one graded in
    full once the engine is back, none ending in error?"""
    assert docker_ready
    with fresh_postgres_database() as database, running_stack(tmp_path, database, GRADER_RUNNER="docker") as stack:
        watcher = Watcher(stack.app, stack.world.student.headers)
        worker = stack.worker("worker", GRADER_RUNNER_CHECK_INTERVAL="1")
        stack.beat()
        ids = stack.upload(2, watcher)
        watcher.wait_all_graded(BOUND)  # warm: its sandbox zygote container runs
        with docker_engine_down(tmp_path / "dockerd.log") as hold:
            ids += stack.upload(4, watcher)
            during = stack.panel_once_paused(worker)
            hold(45)  # longer than a grading's retries last here (backoff 1 s doubling, 5 retries: ~31 s)
            waiting = stack.statuses(ids[2:])
        assert set(waiting) <= {"queued", "running"}, (waiting, logs(stack))
        watcher.wait_all_graded(BOUND)
        watcher.assert_truthful()
        assert_graded_exactly_once(stack.app, ids)
        # The instructor was told why nothing was graded, and is told when the worker takes gradings again.
        assert "Workers online</dt><dd>1 (0 taking gradings)" in during, during
        stranded = r"No online worker takes gradings from the cpu queue now, so [1-4] waiting submission"
        assert re.search(stranded, during), during
        assert "its docker runner cannot grade" in during, during
        after = stack.queue_panel()
        assert "Workers online</dt><dd>1</dd>" in after and "takes no gradings" not in after, after


def test_the_queue_panel_says_when_the_recovery_sweeps_stop(tmp_path: Path) -> None:
    """While `grader beat` runs, does the queue panel say nothing of the sweeps, and once beat is killed (a
    deployment whose beat died), does it warn that runs waiting on the sweeps are stranded until beat runs again?"""
    from grader.models import GradingRun

    with fresh_postgres_database() as database, running_stack(tmp_path, database, GRADER_SWEEP_INTERVAL=2) as stack:
        watcher = Watcher(stack.app, stack.world.student.headers)
        ids = stack.upload(1, watcher)  # no worker: it waits in the queue
        for run in db.session.scalars(select(GradingRun)):  # as if it had waited five minutes
            run.queued_at -= timedelta(minutes=5)
        db.session.commit()
        assert "recovery sweeps have never run" in stack.queue_panel()
        beat = stack.beat()
        wait_for(lambda: "recover_runs" in beat.output(), 60, "a sweep")
        assert "recovery sweeps" not in stack.queue_panel()
        beat.signal_group(signal.SIGKILL)
        beat.process.wait(timeout=10)
        time.sleep(3 * 2 + 15 + 2)  # three sweep intervals and the grace: the sweep is late
        panel = stack.queue_panel()
        assert re.search(r"The recovery sweeps last ran 2\d s ago \(every 2 s\): is grader beat running\?", panel), \
            panel
        assert stack.statuses(ids) == ["queued"]
        told = subprocess.run([sys.executable, "-m", "grader", "queue"], cwd=REPO, env=stack.env, capture_output=True,
                              text=True, timeout=60, check=False)
        assert told.returncode == 1 and "stranded\tThe recovery sweeps last ran" in told.stdout, told
