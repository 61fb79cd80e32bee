"""Deadline rush: N uploads from S students as fast as the API takes them, graded by W real worker processes.

Real parts, as in the fault-injection tests: a Redis server of its own, a fresh PostgreSQL database, `grader
worker` processes (one grading slot each), `grader beat`, and the web app in this process. Prints the drain
time (first upload → last score), submissions per minute, and upload → score latency (p50 / p95).

    PYTHONPATH=. .venv/bin/python bench/bench_rush.py                      # 100 uploads, 10 students, 2 workers
    PYTHONPATH=. .venv/bin/python bench/bench_rush.py --uploads 20 --runner docker

Needs PostgreSQL at 127.0.0.1:5432 (GRADER_TEST_POSTGRES_URL) and the redis-server binary.
`service()` and `rush()` are also used by bench/bench_service.py.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import func, select

from grader.extensions import db
from tests.conftest import (
    REFERENCE_SOLUTION,
    Factory,
    Person,
    fresh_postgres_database,
    service_config,
    service_env,
    upload,
)
from tests.support.recovery_support import Child, children, redis_server, spawn, wait_ready


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Service:
    """The running service: the web app (in this process), its students, and the worker and beat children."""

    app: Flask
    students: list[Person]
    workers: list[Child]
    tmp: Path
    started: list[Child] = field(default_factory=list)
    slots: int = 1  # each worker's concurrency


@contextmanager
def service(runner: str = "local", workers: int = 2, students: int = 10, concurrency: int = 1,
            env: dict[str, str] | None = None) -> Iterator[Service]:
    """Redis of its own, a fresh PostgreSQL database, course RUSH101 with autograd and `students` students,
    `workers` x `grader worker --concurrency N` and `grader beat`; everything stopped and dropped at the end."""
    from grader import create_app

    with tempfile.TemporaryDirectory(prefix="grader-bench-") as folder, fresh_postgres_database() as database, \
            redis_server(Path(folder) / "redis") as redis, children() as started:
        tmp = Path(folder)
        config = service_config(tmp / "home", SQLALCHEMY_DATABASE_URI=database, BROKER_URL=redis.url,
                                RATELIMIT_STORAGE_URI=redis.url, GRADER_RUNNER=runner,
                                GRADER_UPLOAD_RATE_LIMIT="100000 per minute",
                                GRADER_RETRY_BACKOFF=1, TESTING=False)
        app = create_app(config)
        with app.app_context():
            upgrade()
            factory = Factory()
            course = factory.course("RUSH101")
            factory.assignment(course, "autograd")
            people = [factory.person(f"student{i}@example.edu", course) for i in range(students)]
            db.session.remove()
        child_env = service_env(app.config) | (env or {})
        slots = []
        for number in range(workers):
            slots.append(spawn(["worker", "--queues", "cpu", "--concurrency", str(concurrency)], child_env,
                               tmp / f"worker{number}.log"))
            started.append(slots[-1])
        for child in slots:
            wait_ready(child, timeout=180)
        started.append(wait_ready(spawn(["beat"], child_env, tmp / "beat.log"), marker="beat: Starting"))
        try:
            yield Service(app, people, slots, tmp, started, concurrency)
        finally:
            with app.app_context():
                db.session.remove()
                db.engine.dispose()


@dataclass
class Rush:
    """What one rush produced: ids, timings (seconds) and outcomes, from the database."""

    ids: list[int]
    refused: int
    accepted_in: float  # first upload sent → last upload answered
    drain: float  # first upload stored → last score stored
    latencies: list[float]  # upload stored → score stored, per submission
    graded_full: int  # runs graded with the reference solution's full score
    runs: int
    timed_out: bool = False

    @property
    def per_minute(self) -> float:
        """Submissions graded per minute over the drain."""
        return len(self.ids) / self.drain * 60 if self.drain > 0 else 0.0


def wait_drained(app: Flask, timeout: float, interval: float = 0.2) -> bool:
    """Wait until no submission is queued or running; False when `timeout` seconds passed first."""
    from grader.models import Submission

    deadline = time.monotonic() + timeout
    with app.app_context():
        try:
            while True:
                db.session.remove()
                left = db.session.scalar(select(func.count()).select_from(Submission)
                                         .where(Submission.status.in_(("queued", "running"))))
                if not left:
                    return True
                if time.monotonic() > deadline:
                    return False
                time.sleep(interval)
        finally:
            db.session.remove()


def rush(svc: Service, uploads: int, timeout: float = 3600.0, data: bytes | None = None) -> Rush:
    """`uploads` uploads of `data` (the reference solution), students in turn, as fast as the API takes them;
    waits until all are graded and reads the figures back from the database."""
    data = data if data is not None else REFERENCE_SOLUTION.read_bytes()
    client = svc.app.test_client()
    first = time.monotonic()
    ids: list[int] = []
    refused = 0
    for index in range(uploads):
        student = svc.students[index % len(svc.students)]
        with svc.app.app_context():
            response = upload(client, "autograd", data, headers=student.headers)
            if response.status_code == 202:
                ids.append(int(response.json["id"]))
            else:
                refused += 1
    accepted_in = time.monotonic() - first
    drained = wait_drained(svc.app, max(1.0, timeout - accepted_in))
    rows = run_rows(svc.app, ids)
    finished = [r for r in rows if r["finished_at"] is not None]
    drain = ((max(r["finished_at"] for r in finished) - min(r["created_at"] for r in rows)).total_seconds()
             if finished else 0.0)
    return Rush(ids=ids, refused=refused, accepted_in=accepted_in, drain=drain,
                latencies=[(r["finished_at"] - r["created_at"]).total_seconds() for r in finished],
                graded_full=sum(1 for r in rows if r["status"] == "graded" and r["score"] == r["max_score"]),
                runs=len(rows), timed_out=not drained)


def run_rows(app: Flask, ids: list[int]) -> list[dict[str, Any]]:
    """Each run of the submissions `ids`, with its submission's upload time, as plain dicts."""
    from grader.models import GradingRun, Submission

    if not ids:
        return []
    with app.app_context():
        rows = db.session.execute(
            select(Submission.id, Submission.created_at, GradingRun.queued_at, GradingRun.started_at,
                   GradingRun.finished_at, GradingRun.execution_time, GradingRun.status, GradingRun.score,
                   GradingRun.max_score, GradingRun.worker, GradingRun.attempt, GradingRun.result)
            .join(GradingRun, GradingRun.submission_id == Submission.id)
            .where(Submission.id.in_(ids))
        ).mappings().all()
        db.session.remove()
    return [dict(row) for row in rows]


def exit_on_sigterm() -> None:
    """Let `kill` stop a benchmark as Ctrl-C does. A bare SIGTERM ends Python without running the context
    managers that started the service, so its workers, judges, zygote containers and Redis would live on."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


def main() -> int:
    """Run the rush and print the figures."""
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=100)
    parser.add_argument("--students", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runner", default="local", choices=("local", "docker"))
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up after this many seconds")
    options = parser.parse_args()

    with service(options.runner, options.workers, options.students) as svc:
        result = rush(svc, options.uploads, options.timeout)
    print(f"{options.uploads} uploads from {options.students} students accepted in {result.accepted_in:.1f} s "
          f"({result.refused} refused)", flush=True)
    if result.timed_out:
        print(f"gave up after {options.timeout:g} s: not every upload was graded", file=sys.stderr)
        return 1
    print(f"runner {options.runner}, {options.workers} workers x 1 slot: "
          f"{result.graded_full}/{result.runs} graded 100")
    print(f"drain time {result.drain:.1f} s, {result.per_minute:.1f} submissions/minute")
    print(f"upload → score p50 {statistics.median(result.latencies):.1f} s, "
          f"p95 {percentile(result.latencies, 0.95):.1f} s, max {max(result.latencies):.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
