"""End to end, for real: uploads through the API, a real Celery worker process, the real engine, scores in SQL.

PostgreSQL + Redis with the local runner and with Docker; and the README's path: `grader serve` on embedded
defaults plus `grader demo`.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask_migrate import upgrade

from grader.extensions import db
from tests.conftest import (
    REFERENCE_SOLUTION,
    REPO,
    World,
    docker_works,
    isolated_app,
    make_world,
    require_service,
    service_config,
    service_env,
    start_worker,
    stop_process,
    upload,
)

GRADING_TIMEOUT = 300  # seconds; a cold Docker sandbox on a busy CI host is slow


def wait_until_finished(fetch: Callable[[], dict[str, Any]], timeout: float = GRADING_TIMEOUT) -> dict[str, Any]:
    """Poll a submission document until it is graded or errored; return it."""
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        body = fetch()
        if not seen or seen[-1] != body["status"]:
            seen.append(body["status"])
        if body["status"] in ("graded", "error"):
            body["_statuses"] = seen
            return body
        time.sleep(0.5)
    raise AssertionError(f"not graded within {timeout} s; statuses seen: {seen}")


def runner_ready(name: str) -> None:
    """Skip (fail under CI) when the docker runner cannot work on this machine."""
    if name != "docker":
        return
    if not docker_works():
        require_service("Docker", "`docker info` failed")
    from worker.engine.image import image_name

    image = image_name()
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False).returncode:
        require_service("the runner image", f"{image} is missing: run `grader image build`")


@pytest.fixture(params=["local", "docker"])
def production_like(request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str,
                    redis_url: str) -> Iterator[tuple[Flask, World, Any]]:
    """The app on PostgreSQL and Redis with a real `grader worker` process using runner `request.param`."""
    runner_ready(request.param)
    config = service_config(tmp_path / "home", SQLALCHEMY_DATABASE_URI=postgres_url, BROKER_URL=redis_url,
                            GRADER_RUNNER=request.param, RATELIMIT_STORAGE_URI=redis_url,
                            GRADER_RETRY_BACKOFF=1)  # a busy CI host may refuse a sandbox once: retry soon
    app = isolated_app(config)
    with app.app_context():
        upgrade()
        world = make_world()
    worker = start_worker(service_env(app.config), tmp_path / "worker.log")
    try:
        with app.app_context():
            yield app, world, worker
    finally:
        stop_process(worker.process)
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def test_reference_solution_is_graded_100_and_reaches_the_scores(production_like: tuple[Flask, World, Any]) -> None:
    """Is the reference solution, uploaded through the API, graded 100/100 by a real worker (PostgreSQL, Redis,
    local runner and Docker) and listed in the instructor's scores?"""
    app, world, worker = production_like
    client = app.test_client()
    response = upload(client, "autograd", REFERENCE_SOLUTION.read_bytes(), headers=world.student.headers)
    assert response.status_code == 202, response.json
    submission_id = response.json["id"]

    def fetch() -> dict[str, Any]:
        db.session.remove()  # see the worker's commits, not this session's cached rows
        return client.get(f"/api/v1/submissions/{submission_id}", headers=world.student.headers).json

    body = wait_until_finished(fetch)
    assert body["status"] == "graded", (body.get("message"), worker.output()[-3000:])
    failed = [(t["name"], t["status"], t["output"][:300]) for d in body["deliverables"] for t in d["tests"]
              if t["status"] != "passed"]
    assert (body["score"], body["max_score"]) == (100.0, 100.0), failed
    assert body["grading"]["runner"] == app.config["GRADER_RUNNER"]
    if app.config["GRADER_RUNNER"] == "docker":
        assert body["grading"]["image"].startswith("grader-runner")
    scores = client.get("/api/v1/assignments/autograd/scores", headers=world.instructor.headers).json
    row = next(r for r in scores["students"] if r["email"] == world.student.email)
    assert row["submission_id"] == submission_id and row["score"] == 100.0
    assert row["external_id"] == "lms-student-1"
    assert row["deliverables"] == {d["id"]: d["max_score"] for d in scores["deliverables"]}


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_serve_and_demo_on_embedded_defaults(tmp_path: Path) -> None:
    """With nothing configured (SQLite, filesystem broker), do `grader serve` and `grader demo` give a service
    where the demo student's upload of the reference solution is graded 100/100 and the instructor sees it?"""
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "BROKER_URL", "SUBMISSIONS_DIR", "SECRET_KEY", "RATELIMIT_STORAGE_URI")}
    env.update(GRADER_HOME=str(tmp_path / "instance"), GRADER_RUNNER="local", PYTHONUNBUFFERED="1",
               GRADER_RETRY_BACKOFF="1")
    log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen([sys.executable, "-m", "grader", "serve", "--port", str(port), "--concurrency", "1"],
                             cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if requests.get(f"{base}/healthz", timeout=2).json()["status"] == "ok":
                    break
            except requests.RequestException:
                pass
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.5)
        demo = subprocess.run([sys.executable, "-m", "grader", "demo"], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=120, check=True)
        tokens = dict(re.findall(r"^(\w+)-token: (\S+)$", demo.stdout, re.MULTILINE))
        student = {"Authorization": f"Bearer {tokens['student']}"}
        with REFERENCE_SOLUTION.open("rb") as handle:
            response = requests.post(f"{base}/api/v1/assignments/autograd/submissions", headers=student,
                                     files={"file": ("solution.py", handle)}, timeout=30)
        assert response.status_code == 202, response.text
        url = response.json()["url"]
        body = wait_until_finished(lambda: requests.get(url, headers=student, timeout=10).json())
        assert body["status"] == "graded" and body["score"] == 100.0, (tmp_path / "serve.log").read_text()[-3000:]
        instructor = {"Authorization": f"Bearer {tokens['instructor']}"}
        scores = requests.get(f"{base}/api/v1/assignments/autograd/scores", headers=instructor, timeout=10).json()
        row = next(r for r in scores["students"] if r["email"] == "student@example.edu")
        assert row["score"] == 100.0
        assert (tmp_path / "instance" / "grader.db").is_file()
        assert (tmp_path / "instance" / "secret_key").stat().st_mode & 0o777 == 0o600
    finally:
        stop_process(serve, timeout=60)
        log.close()
    assert serve.returncode == 0, (tmp_path / "serve.log").read_text()[-3000:]
    # What whoever starts it reads: no warning that is not theirs to act on (Celery's against root, which is about
    # pickled tasks; kombu's about the host of a broker that has none), and why the worker is root where it is.
    output = (tmp_path / "serve.log").read_text()
    assert "SecurityWarning" not in output and "No hostname was supplied" not in output, output[-3000:]
    assert ("the worker runs as root (makes each sandbox's cgroups)" in output) == (os.geteuid() == 0)
