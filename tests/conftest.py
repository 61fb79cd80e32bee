"""Shared fixtures: an app on a throwaway SQLite home, a client, a factory for people and courses, and the
machine's real PostgreSQL, Redis and a real Celery worker process for end-to-end tests.

PostgreSQL and Redis are expected at 127.0.0.1 (override with GRADER_TEST_POSTGRES_URL / GRADER_TEST_REDIS_URL).
Where one is missing, tests that need it are skipped — except under CI=true, where that is a failure.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.fixtures_engine import docker_ready  # noqa: F401  (engine fixture, shared by engine and corpus tests)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test that ran a service stack (`tests.support.service_stack`) reports what its worker, beat and web
    processes logged, first: their logs are files of a temporary folder, gone once the run is."""
    report = yield
    if report.failed:
        from tests.support.service_stack import Stack, logs

        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, Stack) and value.started:
                report.sections.insert(0, (f"the stack's processes ({call.when})", logs(value, 8000)))
    return report

REPO = Path(__file__).resolve().parents[1]
REFERENCE_SOLUTION = REPO / "reference_tests" / "autograd" / "reference" / "solution.py"
STARTER_SOLUTION = REPO / "reference_tests" / "autograd" / "starter" / "solution.py"
POSTGRES_ADMIN_URL = os.environ.get("GRADER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_BASE_URL = os.environ.get("GRADER_TEST_REDIS_URL", "redis://127.0.0.1:6379")


def require_service(name: str, reason: str) -> None:
    """Skip a test whose service is missing, but fail under CI, where every service must be there."""
    message = f"{name} is not available: {reason}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def service_config(home: Path, **overrides: Any) -> dict[str, Any]:
    """A complete test configuration under `home`, ignoring whatever the developer's environment sets."""
    config: dict[str, Any] = {
        "TESTING": True,
        "GRADER_HOME": str(home),
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{home / 'grader.db'}",
        "SUBMISSIONS_DIR": str(home / "submissions"),
        "BROKER_URL": "filesystem://",
        "RESULT_BACKEND": None,
        "RATELIMIT_STORAGE_URI": "memory://",
        "GRADER_UPLOAD_RATE_LIMIT": "1000 per minute",
        "GRADER_LOGIN_RATE_LIMIT": "1000 per minute",
        "GRADER_RUNNER": "local",
        "GRADER_ASSIGNMENTS": str(REPO / "reference_tests"),
    }
    config.update(overrides)
    return config


class IsolatedClient(FlaskClient):
    """A test client whose every request gets a fresh app context, as under a real server.

    Tests keep an app context pushed for their own database work; without this, requests would share it —
    and with it `g` (Flask-WTF caches the CSRF token there) and the database session.
    """

    def open(self, *args: Any, **kwargs: Any) -> Any:
        """Make the request inside its own app context."""
        with self.application.app_context():
            return super().open(*args, **kwargs)


def isolated_app(config: dict[str, Any]) -> Flask:
    """`create_app(config)` whose test clients are IsolatedClients. Every app a test builds comes from here: a
    request that shared the test's session answered from the rows it had loaded, not from the database (a
    stack's API read a submission as queued after its worker had graded it)."""
    from grader import create_app

    app = create_app(config)
    app.test_client_class = IsolatedClient
    return app


@pytest.fixture
def make_app(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Flask]]:
    """Build apps with `service_config` plus overrides; tables are created, engines disposed afterwards."""
    from grader.extensions import db

    apps: list[Flask] = []
    # The empty schema on SQLite, made by create_all once per session and copied for each app (its ~300 DDL
    # statements were a fifth of a test's set-up).
    schema = tmp_path_factory.getbasetemp() / "schema.db"

    def build(create_tables: bool = True, **overrides: Any) -> Flask:
        home = tmp_path / f"home{len(apps)}"
        config = service_config(home, **overrides)
        default = config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{home / 'grader.db'}"
        copied = create_tables and default and schema.exists()
        if copied:
            home.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(schema, home / "grader.db")
        app = isolated_app(config)
        if create_tables and not copied:
            with app.app_context():
                db.create_all()
            if default:
                with closing(sqlite3.connect(home / "grader.db")) as made, closing(sqlite3.connect(schema)) as kept:
                    made.backup(kept)  # (the tables may still be in the write-ahead log: a file copy would miss them)
        apps.append(app)
        return app

    yield build
    for app in apps:
        with app.app_context():
            db.session.remove()
            for engine in db.engines.values():
                engine.dispose()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Iterator[Flask]:
    """An app on SQLite and the filesystem broker in a temporary GRADER_HOME, inside an app context."""
    app = make_app()
    with app.app_context():
        yield app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of `app`."""
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> Any:
    """A CLI runner of `app` (invoke `grader` subcommands in-process)."""
    return app.test_cli_runner()


@dataclass
class Person:
    """A user made by the factory, with an API token ready to send."""

    user: Any
    token: str
    password: str
    email: str  # kept as text: usable after the session that loaded `user` is gone
    id: int

    @property
    def headers(self) -> dict[str, str]:
        """Authorization header carrying the token."""
        return {"Authorization": f"Bearer {self.token}"}


# Each person's password and its hash, made once per session: a password hash is scrypt at its real cost (~65 ms
# here), and hashing the usual cast of five for each of ~700 tests was most of their set-up.
HASHED: dict[str, tuple[str, str]] = {}


@dataclass
class Factory:
    """Creates courses, assignments and people in the current app's database."""

    people: dict[str, Person] = field(default_factory=dict)

    def course(self, code: str = "DEMO101") -> Any:
        """The course `code`, created if needed."""
        from sqlalchemy import select

        from grader.extensions import db
        from grader.models import Course

        course = db.session.scalar(select(Course).where(Course.code == code))
        if course is None:
            course = Course(code=code, title=f"Course {code}")
            db.session.add(course)
            db.session.commit()
        return course

    def assignment(self, course: Any, slug: str = "autograd") -> Any:
        """Attach pack `slug` (from reference_tests/) to `course`."""
        from grader.extensions import db
        from grader.services.assignments import attach

        assignment = attach(course, slug)
        db.session.commit()
        return assignment

    def person(self, email: str, course: Any | None = None, course_role: str = "student",
               role: str = "student", external_id: str | None = None) -> Person:
        """A user with a password and token, enrolled in `course` with `course_role` when given."""
        from grader.auth.identity import issue_token
        from grader.extensions import db
        from grader.services.accounts import ensure_enrollment, ensure_user

        user = ensure_user(email, name=email.split("@")[0], role=role)
        user.external_id = external_id
        if email not in HASHED:
            password = secrets.token_urlsafe(8)
            user.set_password(password)
            HASHED[email] = password, user.password_hash or ""
        password, user.password_hash = HASHED[email]
        token = issue_token(user)
        if course is not None:
            ensure_enrollment(user, course, course_role)
        db.session.commit()
        self.people[email] = Person(user, token, password, user.email, user.id)
        return self.people[email]


@pytest.fixture
def factory(app: Flask) -> Factory:
    """Make courses, assignments and people."""
    return Factory()


@dataclass
class World:
    """DEMO101 with assignment autograd, an instructor, two students, and an outsider course."""

    course: Any
    assignment: Any
    instructor: Person
    student: Person
    student2: Person
    other_instructor: Person
    outsider: Person


def make_world(factory: Factory | None = None) -> World:
    """DEMO101 + autograd, an instructor, two students; OTHER200 with its own instructor and student."""
    factory = factory or Factory()
    course = factory.course("DEMO101")
    assignment = factory.assignment(course, "autograd")
    other = factory.course("OTHER200")
    return World(
        course=course,
        assignment=assignment,
        instructor=factory.person("instructor@example.edu", course, "instructor", role="instructor"),
        student=factory.person("student@example.edu", course, external_id="lms-student-1"),
        student2=factory.person("student2@example.edu", course, external_id="lms-student-2"),
        other_instructor=factory.person("prof@other.edu", other, "instructor", role="instructor"),
        outsider=factory.person("outsider@other.edu", other),
    )


@pytest.fixture
def world(factory: Factory) -> World:
    """The usual cast, ready to make requests."""
    return make_world(factory)


def upload(client: FlaskClient, slug: str, content: bytes, name: str = "solution.py",
           headers: dict[str, str] | None = None) -> Any:
    """POST a file to the upload endpoint as multipart field `file`."""
    from io import BytesIO

    return client.post(f"/api/v1/assignments/{slug}/submissions", headers=headers or {},
                       data={"file": (BytesIO(content), name)}, content_type="multipart/form-data")


# --- real services ---------------------------------------------------------------------------------------------
@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """Create an empty PostgreSQL database with a random name; yield its URL; drop it afterwards."""
    import sqlalchemy as sa

    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"grader_test_{secrets.token_hex(6)}"
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        require_service("PostgreSQL", str(exc).splitlines()[0])
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def app_on_each_database(request: pytest.FixtureRequest, make_app: Callable[..., Flask]) -> Iterator[Flask]:
    """The app on each database we run on, inside an app context: a module whose queries each database runs its
    own way (a keyset comparison, a window function) takes it as its `app`."""
    with ExitStack() as stack:
        overrides = {}
        if request.param == "postgresql":
            overrides["SQLALCHEMY_DATABASE_URI"] = stack.enter_context(fresh_postgres_database())
        app = make_app(**overrides)
        with app.app_context():
            yield app


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database shared by this test session (dropped at the end)."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis database number of its own for this session, emptied before and after."""
    import redis

    number = secrets.randbelow(15) + 1
    url = f"{REDIS_BASE_URL}/{number}"
    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        client.flushdb()
    except redis.exceptions.ConnectionError as exc:
        require_service("Redis", str(exc))
    yield url
    client.flushdb()
    client.close()


def docker_works() -> bool:
    """Whether a Docker engine answers here."""
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@dataclass
class WorkerProcess:
    """A `grader worker` child process and its log."""

    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        """Everything the worker logged so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start_worker(env: dict[str, str], log: Path, queues: str = "cpu,gpu", timeout: float = 90) -> WorkerProcess:
    """Start `grader worker` with `env` and wait until Celery says it is ready."""
    handle = log.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "grader", "worker", "--queues", queues, "--concurrency", "2"],
        cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT,
    )
    handle.close()
    worker = WorkerProcess(process, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if " ready." in worker.output():
            return worker
        if process.poll() is not None:
            raise RuntimeError(f"the worker exited with {process.returncode}:\n{worker.output()[-4000:]}")
        time.sleep(0.3)
    stop_process(process)
    raise RuntimeError(f"the worker was not ready within {timeout} s:\n{worker.output()[-4000:]}")


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM (graceful), then SIGKILL if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def service_env(config: dict[str, Any]) -> dict[str, str]:
    """Environment variables that make a child process (`grader worker`, `grader serve`) use `config`."""
    env = {k: v for k, v in os.environ.items() if k not in ("RESULT_BACKEND", "RATELIMIT_STORAGE_URI")}
    env.update({
        "GRADER_HOME": config["GRADER_HOME"],
        "DATABASE_URL": config["SQLALCHEMY_DATABASE_URI"],
        "BROKER_URL": config["BROKER_URL"],
        "SUBMISSIONS_DIR": config["SUBMISSIONS_DIR"],
        "GRADER_RUNNER": config["GRADER_RUNNER"],
        "GRADER_ASSIGNMENTS": config["GRADER_ASSIGNMENTS"],
        "GRADER_RETRY_BACKOFF": str(config["GRADER_RETRY_BACKOFF"]),
        "GRADER_MAX_RETRIES": str(config["GRADER_MAX_RETRIES"]),
        "PYTHONUNBUFFERED": "1",
    })
    if config.get("SECRET_KEY"):
        env["SECRET_KEY"] = config["SECRET_KEY"]
    return env
