"""Real parts for the fault-injection tests: a Redis server of the test's own, worker and beat processes in
process groups of their own (so a test can kill a whole tree), and a watcher of what students see.

Everything started here is stopped by the context managers that started it, whatever the test did.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import func, select

from grader.extensions import db
from tests.conftest import REPO, require_service

# Short liveness settings, so each test sees recovery in seconds (production: 5 s / 30 s / 10 s).
FAST_RECOVERY = {"GRADER_HEARTBEAT_INTERVAL": "2", "GRADER_HEARTBEAT_TIMEOUT": "8", "GRADER_SWEEP_INTERVAL": "2",
                 "GRADER_RETRY_BACKOFF": "1"}


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@dataclass
class RedisServer:
    """A `redis-server` child with nothing on disk (a restart forgets every queued message, as in the issue)."""

    port: int
    workdir: Path
    bind: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The broker URL of database 0."""
        return f"redis://{self.bind}:{self.port}/0"

    def start(self) -> None:
        """Start it and wait until it answers PING."""
        binary = "redis-server"
        if shutil.which(binary) is None:
            require_service("redis-server", "the binary is not installed (scripts/test installs it)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", self.bind, "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--protected-mode", "no" if self.bind != "127.0.0.1" else "yes"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        import redis

        deadline = time.monotonic() + 20
        while True:
            try:
                redis.Redis(host=self.bind, port=self.port, socket_connect_timeout=1).ping()
                return
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    log_text = (self.workdir / "redis.log").read_text()
                    raise RuntimeError(f"redis-server did not start: {log_text}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Kill it (it keeps nothing), and wait for the port to be free."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


@contextmanager
def redis_server(workdir: Path, bind: str = "127.0.0.1") -> Iterator[RedisServer]:
    """A running RedisServer, stopped at the end."""
    server = RedisServer(free_port(bind), workdir, bind)
    server.start()
    try:
        yield server
    finally:
        server.stop()


SKEWED_STOP = 3.0  # seconds a process under libfaketime has to stop on SIGTERM (`Child.skewed`)


@dataclass
class Child:
    """A `grader …` process leading its own process group, and its log."""

    process: subprocess.Popen[bytes]
    log: Path
    # Under libfaketime (`service_stack.skewed_clock`), which fakes the monotonic clock too (and, told not to,
    # fails Python's sleeps): a timed wait may then never end, as the rate limiter's in-memory fallback's
    # `threading.Timer` does in a web process, whose exit waits for it. Such a process gets SKEWED_STOP seconds
    # to act on SIGTERM, not the 20 that it spent every time.
    skewed: bool = False

    def output(self) -> str:
        """Everything it logged so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def signal_group(self, signum: int) -> None:
        """Send `signum` to every process of its tree (its process group)."""
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM the group, then SIGKILL whatever lingers."""
        stop_all([self], timeout)


def stop_all(children: list[Child], timeout: float = 20) -> None:
    """Stop `children` as `Child.stop` does, all at once: SIGTERM every group, give them `timeout` in all, then
    SIGKILL whatever lingers (one wait for all of them, not one each)."""
    for child in children:
        if child.process.poll() is None:
            child.signal_group(signal.SIGTERM)
    start = time.monotonic()
    deadline = start + timeout
    for child in children:
        until = min(deadline, start + SKEWED_STOP) if child.skewed else deadline
        try:
            child.process.wait(timeout=max(0.0, until - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for child in children:
        child.signal_group(signal.SIGKILL)
        if child.process.poll() is None:
            child.process.wait(timeout=10)


def spawn(args: list[str], env: dict[str, str], log: Path, prefix: list[str] | None = None,
          module: str = "grader") -> Child:
    """Start `python -m MODULE ARGS` (`grader` unless given) from the repository, in a new session (its own process
    group)."""
    handle = log.open("ab")
    process = subprocess.Popen([*(prefix or []), sys.executable, "-m", module, *args], cwd=REPO, env=env,
                               stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    handle.close()
    return Child(process, log, skewed="FAKETIME" in env)


def wait_ready(child: Child, marker: str = " ready.", timeout: float = 90) -> Child:
    """Wait until `marker` is in the child's log (Celery's worker prints " ready.")."""
    deadline = time.monotonic() + timeout
    while marker not in child.output():
        if child.process.poll() is not None:
            raise RuntimeError(f"{child.log.name} exited with {child.process.returncode}:\n{child.output()[-4000:]}")
        if time.monotonic() > deadline:
            child.stop()
            raise RuntimeError(f"{child.log.name} not ready within {timeout} s:\n{child.output()[-4000:]}")
        time.sleep(0.2)
    return child


@contextmanager
def children() -> Iterator[list[Child]]:
    """A list to put started children in; every one is stopped at the end."""
    started: list[Child] = []
    try:
        yield started
    finally:
        stop_all(started[::-1])


# Statuses a student may see, and where each may go next: anything else is a lie (a graded result that turns
# back into "running", an error that later becomes a score).
ALLOWED = {"queued": {"running", "graded", "error"}, "running": {"queued", "graded", "error"},
           "graded": set(), "error": set()}


@dataclass
class Watcher:
    """Polls each submission as its student sees it (the API document) and keeps the statuses in order."""

    app: Flask
    headers: dict[str, str]
    seen: dict[int, list[str]] = field(default_factory=dict)
    messages: dict[int, set[str]] = field(default_factory=dict)
    finished_at: dict[int, float] = field(default_factory=dict)

    def add(self, submission_id: int) -> None:
        """Start watching a submission."""
        self.seen.setdefault(submission_id, [])
        self.messages.setdefault(submission_id, set())

    def poll(self) -> None:
        """Read every watched submission once."""
        client = self.app.test_client()
        for submission_id, statuses in self.seen.items():
            body = client.get(f"/api/v1/submissions/{submission_id}", headers=self.headers).json
            status = body["status"]
            if not statuses or statuses[-1] != status:
                statuses.append(status)
            if body.get("message"):
                self.messages[submission_id].add(body["message"])
            if status in ("graded", "error") and submission_id not in self.finished_at:
                self.finished_at[submission_id] = time.monotonic()

    def wait_all_graded(self, timeout: float, interval: float = 0.5) -> float:
        """Poll until every submission is graded or errored; the seconds it took. Fails on a timeout."""
        start = time.monotonic()
        while True:
            self.poll()
            if len(self.finished_at) == len(self.seen):
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise AssertionError(f"not all graded within {timeout} s: {self.seen}")
            time.sleep(interval)

    def assert_truthful(self) -> None:
        """Every status sequence follows ALLOWED and ends graded."""
        for submission_id, statuses in self.seen.items():
            went = f"submission {submission_id} went {statuses}, saying {sorted(self.messages[submission_id])}"
            for before, after in itertools.pairwise(statuses):
                assert after in ALLOWED[before], went
            assert statuses[-1] == "graded", went


def assert_graded_exactly_once(app: Flask, submission_ids: list[int], score: float = 100.0) -> None:
    """Each submission: one run, graded `score`, one set of score rows, one set of test results."""
    from grader.models import DeliverableScore, Submission, TestResult

    with app.app_context():
        for submission_id in submission_ids:
            submission = db.session.get(Submission, submission_id)
            assert submission is not None and submission.status == "graded"
            runs = submission.runs
            assert len(runs) == 1, [(r.id, r.status) for r in runs]
            run = runs[0]
            assert run.status == "graded" and run.score == score, (run.status, run.score, run.message)
            deliverables = len(submission.assignment.deliverables)
            scores = db.session.scalar(select(func.count()).select_from(DeliverableScore)
                                       .where(DeliverableScore.run_id == run.id))
            assert scores == deliverables
            tests = db.session.scalar(select(func.count()).select_from(TestResult).where(TestResult.run_id == run.id))
            assert tests == len(run.result["deliverables"] and
                                [t for d in run.result["deliverables"] for t in d["tests"]])
        db.session.remove()


def run_rows(app: Flask, submission_ids: list[int]) -> list[Any]:
    """(submission id, attempt, worker) of each submission's run."""
    from grader.models import Submission

    with app.app_context():
        rows = [(s.id, s.runs[0].attempt, s.runs[0].worker)
                for s in (db.session.get(Submission, i) for i in submission_ids) if s is not None]
        db.session.remove()
    return rows
