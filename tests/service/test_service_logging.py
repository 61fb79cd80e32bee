"""Logs: can an instructor's "my student's upload vanished" be answered from them?"""

from __future__ import annotations

import io
import json
import logging
import logging.config
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

import worker.tasks
from grader.logs import logging_config
from tests.conftest import REFERENCE_SOLUTION, World, upload
from worker.engine.errors import InfrastructureError
from worker.engine.result import DeliverableResult, GradeResult


@pytest.fixture
def configured() -> Iterator[Any]:
    """Install the real dictConfig writing into a buffer; put pytest's logging back afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, {n: logging.getLogger(n).level for n in ("grader", "worker")})
    buffer = io.StringIO()

    def install(fmt: str) -> io.StringIO:
        config = logging_config(fmt, "INFO")
        config["handlers"]["stderr"]["stream"] = buffer
        logging.config.dictConfig(config)
        return buffer

    yield install
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)


def test_module_loggers_info_lines_are_kept(configured: Any) -> None:
    """Does an INFO line from a module logger (an LTI refusal) reach the log, as a plain line by default?"""
    buffer = configured("plain")
    logging.getLogger("grader.lms.lti").info("LTI launch refused: %s", "bad nonce")
    line = buffer.getvalue().strip()
    assert line.endswith("INFO grader.lms.lti: LTI launch refused: bad nonce")


def test_json_lines_carry_the_structured_fields(configured: Any) -> None:
    """With GRADER_LOG_FORMAT=json, is each record one JSON object with its submission id?"""
    buffer = configured("json")
    logging.getLogger("grader.services.grading").info("graded", extra={"submission_id": 7, "run_id": 9})
    doc = json.loads(buffer.getvalue())
    assert doc["message"] == "graded" and doc["level"] == "INFO" and doc["logger"] == "grader.services.grading"
    assert doc["submission_id"] == 7 and doc["run_id"] == 9 and "time" in doc


def test_each_request_logs_one_line_with_the_submission_id(client: FlaskClient, world: World,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """Does an upload log one line naming the student and the new submission, and reading it name it again?"""
    caplog.set_level(logging.INFO, logger="grader.request")
    response = upload(client, "autograd", REFERENCE_SOLUTION.read_bytes(), headers=world.student.headers)
    submission_id = response.json["id"]
    client.get(f"/api/v1/submissions/{submission_id}", headers=world.student.headers)
    lines = [r for r in caplog.records if r.name == "grader.request"]
    assert [(r.method, r.status, r.submission_id) for r in lines] == [("POST", 202, submission_id),
                                                                       ("GET", 200, submission_id)]
    assert lines[0].user == "student@example.edu" and lines[0].assignment == "autograd"
    assert f"submission={submission_id}" in lines[0].getMessage()


def test_a_refused_upload_is_in_the_log_too(client: FlaskClient, world: World,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """Does a refused upload (nothing stored) still leave a line with the student, the assignment and the status?"""
    caplog.set_level(logging.INFO, logger="grader.request")
    upload(client, "autograd", b"", headers=world.student.headers)
    (line,) = [r for r in caplog.records if r.name == "grader.request"]
    assert (line.status, line.user, line.assignment, line.submission_id) == (
        422, "student@example.edu", "autograd", None)


def test_each_grading_run_logs_one_line(client: FlaskClient, world: World, monkeypatch: pytest.MonkeyPatch,
                                        caplog: pytest.LogCaptureFixture) -> None:
    """Does a recorded run log one line with the submission id, the student and the score — and an error too?"""
    result = GradeResult("autograd", "graded", 20.0, 100.0, "", 1.0,
                         [DeliverableResult("simple_gradients", "Simple", 20.0, 20.0, [])], "fake")
    script: list[Any] = [result]

    def engine(*_: Any) -> GradeResult:
        step = script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    monkeypatch.setattr(worker.tasks, "run_engine", engine)
    monkeypatch.setattr(worker.tasks.grade_submission, "max_retries", 0)
    caplog.set_level(logging.INFO, logger="grader.services.grading")
    first = upload(client, "autograd", REFERENCE_SOLUTION.read_bytes(), headers=world.student.headers).json["id"]
    worker.tasks.grade_submission.apply(args=[first])
    script.append(InfrastructureError("no sandbox"))
    second = upload(client, "autograd", b"x = 2\n", headers=world.student.headers).json["id"]
    worker.tasks.grade_submission.apply(args=[second])
    lines = [r for r in caplog.records if r.name == "grader.services.grading"]
    assert [(r.submission_id, r.outcome) for r in lines] == [(first, "graded"), (second, "error")]
    assert lines[0].score == 20.0 and lines[0].user == "student@example.edu"
    assert "graded: 20.0 / 100.0" in lines[0].getMessage()
