"""The service as a deployment runs it, for tests that break or skew its parts: the web app in the test's
process on a PostgreSQL database of the test's own and a Redis server of the test's own, and `grader worker` and
`grader beat` processes started through it (each stopped when the stack is)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask_migrate import upgrade

from grader.extensions import db
from tests.conftest import (
    REFERENCE_SOLUTION,
    World,
    isolated_app,
    make_world,
    service_config,
    service_env,
    upload,
)
from tests.support.dashboard_support import login
from tests.support.recovery_support import (
    FAST_RECOVERY,
    Child,
    RedisServer,
    Watcher,
    children,
    free_port,
    redis_server,
    spawn,
    stop_all,
    wait_ready,
)

FAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")  # Debian's faketime package


def skewed_clock(offset: str) -> dict[str, str]:
    """The environment of a process whose clock is `offset` ("+120s", "-90s") off the real one, under libfaketime
    (stopped sooner: `recovery_support.Child.skewed`); the test fails where the library is missing."""
    if not FAKETIME.exists():
        pytest.fail(f"{FAKETIME} is missing: scripts/test installs it (apt-get install faketime)")
    return {"LD_PRELOAD": str(FAKETIME), "FAKETIME": offset}


# Test hooks run at start-up (sitecustomize) by a child whose PYTHONPATH starts with this folder: see its module.
COMMIT_HOOKS = Path(__file__).parent / "commit_hooks"


@dataclass
class Stack:
    """The web app (in this process) on PostgreSQL and the test's Redis, and how to start the other parts."""

    app: Flask
    world: World = field(repr=False)  # (its rows are detached once the set-up's session is gone)
    redis: RedisServer
    env: dict[str, str]
    tmp: Path
    started: list[Child]

    def worker(self, name: str = "worker", queues: str = "cpu,gpu", **env: str) -> Child:
        """Start a `grader worker` (2 slots) taking `queues`, with `env` added to its environment, and wait until
        Celery is ready."""
        child = spawn(["worker", "--queues", queues, "--concurrency", "2"], self.env | env,
                      self.tmp / f"{name}.log")
        self.started.append(child)
        return wait_ready(child)

    def web(self, name: str = "web", **env: str) -> str:
        """Start a web process as production runs it (gunicorn, one worker), with `env` added to its environment;
        its base URL once it serves."""
        port = free_port()
        child = spawn(["--bind", f"127.0.0.1:{port}", "--workers", "1", "grader:create_app()"], self.env | env,
                      self.tmp / f"{name}.log", module="gunicorn")
        self.started.append(child)
        wait_ready(child, marker="Booting worker", timeout=60)
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(url + "/healthz"), 60, f"{name} answering")
        return url

    def beat(self) -> Child:
        """Start `grader beat` (the recovery sweeps)."""
        child = spawn(["beat", "--loglevel", "INFO"], self.env, self.tmp / "beat.log")
        self.started.append(child)
        return wait_ready(child, marker="beat: Starting", timeout=60)

    def upload(self, count: int, watcher: Watcher, content: bytes | None = None) -> list[int]:
        """`count` uploads by the student of `content` (the reference solution unless given); their ids (each
        answered 202)."""
        ids = []
        client = self.app.test_client()
        for _ in range(count):
            response = upload(client, "autograd", REFERENCE_SOLUTION.read_bytes() if content is None else content,
                              headers=self.world.student.headers)
            assert response.status_code == 202, response.json
            ids.append(response.json["id"])
            watcher.add(response.json["id"])
        return ids

    def queue_panel(self) -> str:
        """The grading-queue panel of the instructor's assignment page, as the workers answer now (not cached), its
        white space collapsed."""
        from grader.services import queue

        queue._cache.clear()
        with self.app.app_context():  # a context of its own: the stack's holds `g` of earlier requests (their user)
            client = self.app.test_client()
            login(client, self.world.instructor)
            html = client.get("/instructor/assignments/autograd").get_data(as_text=True)
        start = html.index('<h2 id="queue-h">')
        return " ".join(html[start:html.index("</section>", start)].split())

    def panel_once_paused(self, worker: Child) -> str:
        """The queue panel, read once `worker` has said it stopped taking gradings (within 30 s)."""
        wait_for(lambda: "stopped taking gradings" in worker.output(), 30, f"{worker.log.stem} pausing")
        return self.queue_panel()

    def statuses(self, ids: list[int]) -> list[str]:
        """Each submission's status in the database now."""
        from grader.models import Submission

        with self.app.app_context():
            found = [db.session.get(Submission, i).status for i in ids]  # type: ignore[union-attr]
            db.session.remove()
        return found


@contextmanager
def running_stack(tmp_path: Path, database: str, **config: Any) -> Iterator[Stack]:
    """The stack on the empty PostgreSQL database `database` and a fresh Redis server, with `config` on top of the
    test configuration; children started through it are stopped afterwards."""
    with redis_server(tmp_path / "redis") as redis, children() as started:
        settings = service_config(tmp_path / "home", SQLALCHEMY_DATABASE_URI=database, BROKER_URL=redis.url,
                                RATELIMIT_STORAGE_URI=redis.url, GRADER_RETRY_BACKOFF=1) | config
        app = isolated_app(settings)
        with app.app_context():
            upgrade()
            world = make_world()
        env = service_env(app.config) | FAST_RECOVERY
        try:
            with app.app_context():
                yield Stack(app, world, redis, env, tmp_path, started)
        finally:
            stop_all(started)
            with app.app_context():
                db.session.remove()
                db.engine.dispose()


def logs(stack: Stack, tail: int = 2500) -> str:
    """The last `tail` characters of every child's log (for failure messages)."""
    return "\n".join(f"--- {c.log.name}\n{c.output()[-tail:]}" for c in stack.started)


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    """Poll `predicate` until true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.2)


def _answers(url: str) -> bool:
    """Whether an HTTP server answers at `url` (any status)."""
    try:
        requests.get(url, timeout=5)
    except requests.ConnectionError:
        return False
    return True
