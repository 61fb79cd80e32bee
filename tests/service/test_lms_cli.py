"""`grader lms …`: the exact output of `add` (other tools parse it), list, rotate, set-url, remove, sweep, and
one-line errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from click.testing import Result
from flask import Flask
from sqlalchemy import select

from grader.cli import cli
from grader.extensions import db
from grader.models.lms import LmsIntegration
from tests.conftest import REPO, World

SECRET_LINE = re.compile(r"^(inbound|outbound)-secret: whsec_[A-Za-z0-9+/=]{40,}$")


def grader(app: Flask, *args: str) -> Result:
    """Run `grader ARGS…` in-process against `app`."""
    return app.test_cli_runner().invoke(cli, list(args))


def test_add_prints_exactly_the_two_secret_lines(app: Flask, world: World) -> None:
    """Does `grader lms add NAME --course C --outbound-url U` print exactly `inbound-secret: whsec_…` then
    `outbound-secret: whsec_…`, two different secrets, and store the integration?"""
    result = grader(app, "lms", "add", "canvas", "--course", "DEMO101", "--outbound-url", "https://lms.example/h")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2 and all(SECRET_LINE.match(line) for line in lines)
    assert lines[0].startswith("inbound-secret: ") and lines[1].startswith("outbound-secret: ")
    assert lines[0].split(": ")[1] != lines[1].split(": ")[1]
    row = db.session.scalar(select(LmsIntegration))
    assert (row.name, row.course.code, row.outbound_url) == ("canvas", "DEMO101", "https://lms.example/h")


def test_list_rotate_set_url_remove(app: Flask, world: World) -> None:
    """Do list (no secrets), rotate (new secrets printed), set-url and remove work as documented?"""
    added = grader(app, "lms", "add", "moodle", "--course", "DEMO101").output
    listed = grader(app, "lms", "list")
    assert listed.exit_code == 0 and "moodle" in listed.output and "DEMO101" in listed.output
    assert "whsec_" not in listed.output
    rotated = grader(app, "lms", "rotate", "moodle", "--which", "inbound")
    assert rotated.exit_code == 0
    (line,) = rotated.output.splitlines()
    assert SECRET_LINE.match(line) and line.startswith("inbound-secret: ") and line not in added
    assert "old secrets valid until" in grader(app, "lms", "list").output
    assert grader(app, "lms", "set-url", "moodle", "http://127.0.0.1:9/x").exit_code == 0
    assert '"outbound_url": "http://127.0.0.1:9/x"' in grader(app, "lms", "list", "--json").output
    assert grader(app, "lms", "remove", "moodle").exit_code == 0
    assert db.session.scalar(select(LmsIntegration)) is None
    assert grader(app, "lms", "sweep").output.splitlines() == [
        "re-queued 0 deliveries", "re-queued 0 LTI score publications", "purged 0 old webhook receipts"]


def test_errors_are_one_line_with_exit_status_2(app: Flask, world: World) -> None:
    """Are an unknown course, a duplicate name, a bad URL and an unknown integration one-line errors (exit 2)?"""
    grader(app, "lms", "add", "canvas", "--course", "DEMO101")
    for args in (
        ["lms", "add", "other", "--course", "NOPE"],
        ["lms", "add", "canvas", "--course", "DEMO101"],
        ["lms", "add", "third", "--course", "DEMO101", "--outbound-url", "ftp://x"],
        ["lms", "rotate", "missing"],
        ["lms", "remove", "missing"],
    ):
        result = grader(app, *args)
        assert result.exit_code == 2, (args, result.output)
        assert len(result.output.strip().splitlines()) == 1 and "whsec_" not in result.output


def test_console_command_prints_the_secrets(tmp_path: Path) -> None:
    """Does the installed command line (`python -m grader lms add …`, after `db upgrade` and `demo`) print the
    two secret lines — the contract other tools depend on?"""
    env = {**os.environ, "GRADER_HOME": str(tmp_path), "GRADER_RUNNER": "local", "BROKER_URL": "filesystem://"}
    env.pop("DATABASE_URL", None)
    run = [sys.executable, "-m", "grader"]
    for args in (["db", "upgrade"], ["demo"]):
        done = subprocess.run([*run, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    done = subprocess.run([*run, "lms", "add", "canvas", "--course", "DEMO101"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [line.split(":")[0] for line in done.stdout.splitlines()] == ["inbound-secret", "outbound-secret"]
