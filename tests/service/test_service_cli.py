"""The `grader` command line: demo, admin commands, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def grader(home: Path, *args: str, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `grader` entry point on embedded defaults in `home`."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BROKER_URL", "SUBMISSIONS_DIR")}
    env.update(GRADER_HOME=str(home), GRADER_ASSIGNMENTS=str(REPO / "reference_tests"))
    return subprocess.run([sys.executable, "-m", "grader", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120, input=input_text, check=False)


def test_demo_is_idempotent_and_prints_fresh_tokens(tmp_path: Path) -> None:
    """Does `grader demo` set up DEMO101 on an empty home, print the three token lines and logins, and on a
    second run create nothing twice but issue new tokens?"""
    first = grader(tmp_path, "demo")
    assert first.returncode == 0, first.stderr
    tokens = dict(re.findall(r"^(instructor|student|student2)-token: (\S+)$", first.stdout, re.MULTILINE))
    assert set(tokens) == {"instructor", "student", "student2"}
    assert re.search(r"^student-login: student@example\.edu \S+$", first.stdout, re.MULTILINE)
    second = grader(tmp_path, "demo")
    assert second.returncode == 0, second.stderr
    again = dict(re.findall(r"^(instructor|student|student2)-token: (\S+)$", second.stdout, re.MULTILINE))
    assert set(again) == set(tokens) and not set(again.values()) & set(tokens.values())
    courses = grader(tmp_path, "course", "list")
    assert courses.stdout.count("DEMO101") == 1 and "3 enrolled" in courses.stdout
    assert "assignments: autograd" in courses.stdout
    users = grader(tmp_path, "user", "list").stdout.splitlines()
    assert len(users) == 3


def test_admin_commands_create_course_user_enrollment(tmp_path: Path) -> None:
    """Can an admin create a course, attach an assignment, create a user and enroll them from the CLI?"""
    assert grader(tmp_path, "db", "upgrade").returncode == 0
    assert grader(tmp_path, "course", "create", "CS50", "--title", "Intro").stdout == "course: CS50\n"
    added = grader(tmp_path, "assignment", "add", "autograd", "--course", "CS50")
    assert added.returncode == 0 and "autograd v1 in CS50" in added.stdout
    created = grader(tmp_path, "user", "create", "Ann@Example.edu", "--external-id", "sis-7")
    assert created.returncode == 0
    assert re.search(r"^token: grd_\S+$", created.stdout, re.MULTILINE)
    enrolled = grader(tmp_path, "enrollment", "add", "ann@example.edu", "CS50", "--role", "instructor")
    assert enrolled.stdout == "enrolled: ann@example.edu in CS50 as instructor\n"
    assert grader(tmp_path, "enrollment", "list", "CS50").stdout == "ann@example.edu\tinstructor\n"
    assert grader(tmp_path, "assignment", "policy", "autograd", "best").stdout == "autograd: best\n"
    assert "unchanged" in grader(tmp_path, "assignment", "sync").stdout
    removed = grader(tmp_path, "enrollment", "remove", "ann@example.edu", "CS50")
    assert removed.returncode == 0 and grader(tmp_path, "enrollment", "list", "CS50").stdout == ""
    asked = grader(tmp_path, "user", "password", "ann@example.edu", input_text="n3w-secret\nn3w-secret\n")
    assert asked.returncode == 0 and "password set for ann@example.edu" in asked.stdout, asked.stderr


@pytest.fixture(scope="module")
def cli_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A home with course CS50; and what `course list` and `user list` printed then."""
    home = tmp_path_factory.mktemp("cli-home")
    assert grader(home, "db", "upgrade").returncode == 0
    assert grader(home, "course", "create", "CS50").returncode == 0
    return home, state(home)


def state(home: Path) -> str:
    """Courses, users and enrollments as the CLI lists them."""
    return "\n".join(grader(home, *args).stdout for args in (("course", "list"), ("user", "list")))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("course", "create", "CS50"), "already exists"),
        (("enrollment", "add", "nobody@example.edu", "CS50"), "no user 'nobody@example.edu'"),
        (("assignment", "add", "no-such-pack", "--course", "CS50"), "unknown assignment 'no-such-pack'"),
        (("user", "create", "not-an-email"), "not an email address"),
        (("worker", "--queues", "cpu,tpu"), "--queues takes a comma-separated subset of cpu,gpu"),
        (("course", "frobnicate"), "No such command"),
        (("enrollment", "add", "a@example.edu", "CS50", "--role", "dean"), "'dean' is not one of"),
        (("enrollment", "add", "a@example.edu", "CS50", "--bogus"), "(see 'grader enrollment add --help')"),
        (("user", "password", "nobody@example.edu"), "no user 'nobody@example.edu'"),  # said before any prompt
    ],
    ids=["duplicate-course", "unknown-user", "unknown-assignment", "bad-email", "bad-queue", "unknown-command",
         "bad-role", "help-names-the-whole-command", "unknown-user-before-the-password-prompt"],
)
def test_cli_errors_are_one_line_with_status_2(cli_home: tuple[Path, str], args: tuple[str, ...],
                                               message: str) -> None:
    """Does each user mistake print one clear line on stderr and exit with status 2, changing nothing?"""
    home, before = cli_home
    result = grader(home, *args)
    assert result.returncode == 2, result
    assert result.stderr.startswith("grader: error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert state(home) == before


def test_commands_on_an_empty_database_say_to_upgrade(tmp_path: Path) -> None:
    """Before any migration, does an admin command say in one line to run `grader db upgrade`?"""
    result = grader(tmp_path, "course", "list")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "grader db upgrade" in result.stderr


def test_bad_configuration_is_one_line_with_status_2(tmp_path: Path) -> None:
    """Does an inconsistent setting (time limit above the visibility timeout) stop the CLI with one line?"""
    env_home = tmp_path
    result = subprocess.run(
        [sys.executable, "-m", "grader", "course", "list"], cwd=REPO, capture_output=True, text=True, timeout=60,
        env={**os.environ, "GRADER_HOME": str(env_home), "GRADER_TASK_TIME_LIMIT": "5000"}, check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "GRADER_VISIBILITY_TIMEOUT" in result.stderr


def test_flask_app_grader_runs_the_apps_commands(tmp_path: Path) -> None:
    """Does `flask --app grader` offer our commands as Flask users expect (db upgrade, then user create/list)?"""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BROKER_URL", "SUBMISSIONS_DIR")}
    env.update(GRADER_HOME=str(tmp_path), GRADER_ASSIGNMENTS=str(REPO / "reference_tests"))

    def flask(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "flask", "--app", "grader", *args], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120, check=False)

    assert flask("db", "upgrade").returncode == 0
    created = flask("user", "create", "ada@example.edu", "--name", "Ada")
    assert created.returncode == 0, created.stderr
    listed = flask("user", "list")
    assert listed.returncode == 0 and "ada@example.edu" in listed.stdout


@pytest.mark.parametrize(("cpus", "memory_gib", "slots"), [
    (2, 24, 2),     # this machine: a slot per CPU (with one, it graded a quarter fewer per second)
    (16, 8, 4),     # many CPUs, little memory: as many slots as memory holds
    (1, 64, 1),
    (8, 1, 1),      # never none
    (None, 0, 1),   # the system says nothing: one slot
])
def test_worker_default_is_a_slot_per_cpu_that_memory_holds(monkeypatch: pytest.MonkeyPatch, cpus: int | None,
                                                            memory_gib: int, slots: int) -> None:
    """Does `grader worker` (and so `grader serve`) default to one slot per CPU, fewer where memory is short?"""
    from grader.cli import serve

    monkeypatch.setattr(serve.os, "cpu_count", lambda: cpus)
    monkeypatch.setattr(serve, "usable_memory", lambda: memory_gib * 2**30)
    assert serve.slot_memory_bytes() > 2**30  # a sandbox at the default limit and the slot's machinery
    assert serve.default_concurrency() == slots


@pytest.mark.parametrize(("limit", "expected_gib"), [
    ("4294967296\n", 4),             # a container limited to 4 GiB on a bigger machine
    ("max\n", None),                 # cgroup v2 without a limit: the machine's memory
    ("9223372036854771712\n", None),  # cgroup v1's root: no limit either
    ("garbage", None),
])
def test_slots_count_a_containers_memory_limit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, limit: str,
                                               expected_gib: int | None) -> None:
    """Does the default count the memory cgroup's limit, where it is lower than the machine's memory?"""
    from grader.cli import serve

    machine = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    (tmp_path / "memory.max").write_text(limit, encoding="ascii")
    monkeypatch.setattr(serve, "CGROUP_MEMORY_LIMITS", (str(tmp_path / "missing"), str(tmp_path / "memory.max")))
    expected = expected_gib * 2**30 if expected_gib and expected_gib * 2**30 < machine else machine
    assert serve.usable_memory() == expected


def test_queue_on_an_idle_deployment_exits_0_and_says_what_it_knows(tmp_path: Path) -> None:
    """Does `grader queue` on a fresh deployment with no worker and nothing waiting exit 0, in text and in JSON
    (`tests/service/test_worker_scratch_full.py` runs it against a paused worker)?"""
    assert grader(tmp_path, "demo").returncode == 0
    text = grader(tmp_path, "queue")
    assert text.returncode == 0, text.stderr
    assert "waiting\t0\n" in text.stdout and "running\t0\n" in text.stdout and "stranded" not in text.stdout
    as_json = grader(tmp_path, "queue", "--json")
    assert as_json.returncode == 0, as_json.stderr
    state = json.loads(as_json.stdout)
    assert (state["queued"], state["running"], state["stranded"], state["sweeps"]) == (0, 0, False, None)
