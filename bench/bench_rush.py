"""Deadline rush: N uploads from S students as fast as the API takes them, graded by W real worker processes.

Real parts, as in the fault-injection tests: a Redis server of its own, a fresh PostgreSQL database, `grader
worker` processes (one grading slot each), `grader beat`, and the web app in this process. Prints the drain
time (first upload → last score), submissions per minute, and upload → score latency (p50 / p95).

    PYTHONPATH=. .venv/bin/python bench/bench_rush.py                      # 100 uploads, 10 students, 2 workers
    PYTHONPATH=. .venv/bin/python bench/bench_rush.py --uploads 20 --runner docker

Needs PostgreSQL at 127.0.0.1:5432 (GRADER_TEST_POSTGRES_URL) and the redis-server binary.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flask_migrate import upgrade
from sqlalchemy import func, select

from grader.extensions import db
from tests.conftest import (
    REFERENCE_SOLUTION,
    Factory,
    fresh_postgres_database,
    service_config,
    service_env,
    upload,
)
from tests.recovery_support import children, redis_server, spawn, wait_ready


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def main() -> int:
    """Run the rush and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=100)
    parser.add_argument("--students", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runner", default="local", choices=("local", "docker"))
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up after this many seconds")
    options = parser.parse_args()

    from grader import create_app
    from grader.models import GradingRun, Submission

    with tempfile.TemporaryDirectory(prefix="grader-bench-") as folder, fresh_postgres_database() as database, \
            redis_server(Path(folder) / "redis") as redis, children() as started:
        tmp = Path(folder)
        config = service_config(tmp / "home", SQLALCHEMY_DATABASE_URI=database, BROKER_URL=redis.url,
                                RATELIMIT_STORAGE_URI=redis.url, GRADER_RUNNER=options.runner,
                                GRADER_RETRY_BACKOFF=1, TESTING=False)
        app = create_app(config)
        with app.app_context():
            upgrade()
            factory = Factory()
            course = factory.course("RUSH101")
            factory.assignment(course, "autograd")
            students = [factory.person(f"student{i}@example.edu", course) for i in range(options.students)]
        env = service_env(app.config)
        for number in range(options.workers):
            started.append(spawn(["worker", "--queues", "cpu", "--concurrency", "1"], env,
                                 tmp / f"worker{number}.log"))
        for child in started:
            wait_ready(child, timeout=180)
        started.append(wait_ready(spawn(["beat"], env, tmp / "beat.log"), marker="beat: Starting"))

        data = REFERENCE_SOLUTION.read_bytes()
        client = app.test_client()
        first = time.monotonic()
        refused = 0
        for index in range(options.uploads):
            student = students[index % len(students)]
            with app.app_context():
                if upload(client, "autograd", data, headers=student.headers).status_code != 202:
                    refused += 1
        accepted_in = time.monotonic() - first
        print(f"{options.uploads} uploads from {options.students} students accepted in {accepted_in:.1f} s "
              f"({refused} refused)", flush=True)
        with app.app_context():
            while True:
                db.session.remove()
                left = db.session.scalar(select(func.count()).select_from(Submission)
                                         .where(Submission.status.in_(("queued", "running"))))
                if not left:
                    break
                if time.monotonic() - first > options.timeout:
                    print(f"gave up: {left} still waiting", file=sys.stderr)
                    return 1
                time.sleep(1)
            rows = db.session.execute(
                select(Submission.created_at, GradingRun.finished_at, GradingRun.status, GradingRun.score)
                .join(GradingRun, GradingRun.submission_id == Submission.id)
            ).all()
            db.session.remove()
            db.engine.dispose()
        start = min(created for created, *_ in rows)
        end = max(finished for _, finished, *_ in rows)
        drain = (end - start).total_seconds()
        latencies = [(finished - created).total_seconds() for created, finished, *_ in rows]
        graded = sum(1 for *_, status, score in rows if status == "graded" and score == 100.0)
        print(f"runner {options.runner}, {options.workers} workers x 1 slot: {graded}/{len(rows)} graded 100")
        print(f"drain time {drain:.1f} s, {len(rows) / drain * 60:.1f} submissions/minute")
        print(f"upload → score p50 {statistics.median(latencies):.1f} s, p95 {percentile(latencies, 0.95):.1f} s, "
              f"max {max(latencies):.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
