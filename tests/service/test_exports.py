"""Exports to other graders' hosts and `grader grade`'s summary: what may a student see, and what does a
failed run look like?"""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from grader.cli.engine import grade_command
from grader.exports import GRADESCOPE_FAILURE, to_gradescope, to_prairielearn
from worker.engine.errors import InfrastructureError
from worker.engine.result import DeliverableResult, GradeResult
from worker.engine.result import TestResult as Verdict

HIDDEN_OUTPUT = "expected 42 from the secret input 1337"


def result() -> GradeResult:
    """One deliverable with a visible pass, a hidden failure and an after-due-date failure."""
    tests = [
        Verdict("test_shown", "passed", 5.0, 5.0, "visible", ""),
        Verdict("test_secret", "failed", 0.0, 5.0, "hidden", HIDDEN_OUTPUT),
        Verdict("test_later", "failed", 0.0, 5.0, "after_due_date", "later: " + HIDDEN_OUTPUT),
    ]
    return GradeResult(assignment="autograd", status="graded", score=5.0, max_score=15.0, execution_time=1.25,
                       deliverables=[DeliverableResult("d1", "Deliverable one", 5.0, 15.0, tests)])


def test_prairielearn_export_withholds_hidden_and_not_yet_due_output() -> None:
    """Does the PrairieLearn document keep a hidden or not-yet-due test to its name and points, as the pages do?"""
    document = to_prairielearn(result())
    assert HIDDEN_OUTPUT not in json.dumps(document)
    by_name = {t["name"]: t for t in document["tests"]}
    secret = by_name["Deliverable one: test_secret"]
    assert secret["points"] == 0.0 and secret["max_points"] == 5.0 and secret["output"] == ""
    assert "shown after the due date" in by_name["Deliverable one: test_later"]["message"]


def test_prairielearn_export_shows_after_due_date_tests_once_due() -> None:
    """With the due date passed, is an after-due-date test's output shown, but a hidden one's still not?"""
    by_name = {t["name"]: t for t in to_prairielearn(result(), after_due=True)["tests"]}
    assert by_name["Deliverable one: test_later"]["output"] == "later: " + HIDDEN_OUTPUT
    assert by_name["Deliverable one: test_secret"]["output"] == ""


def test_gradescope_export_lets_gradescope_enforce_visibility() -> None:
    """Does each Gradescope test carry our visibility (Gradescope withholds it), and is the judge's stdout hidden?"""
    document = to_gradescope(result())
    assert [t["visibility"] for t in document["tests"]] == ["visible", "hidden", "after_due_date"]
    assert document["stdout_visibility"] == "hidden"


def _run(monkeypatch: pytest.MonkeyPatch, tmp_path: Any, outcome: GradeResult | Exception, *args: str) -> Any:
    def fake_grade(*_args: Any, **_kwargs: Any) -> GradeResult:
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr("worker.engine.grade.grade", fake_grade)
    solution = tmp_path / "solution.py"
    solution.write_text("x = 1\n")
    return CliRunner().invoke(grade_command, ["--assignment", "autograd", "--runner", "local", *args,
                                              str(solution)])


def test_an_infrastructure_error_is_a_failed_gradescope_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Does a broken sandbox under --format gradescope exit non-zero with no results.json, not a score of 0?"""
    done = _run(monkeypatch, tmp_path, InfrastructureError("docker went away"), "--format", "gradescope")
    assert done.exit_code == 1
    assert done.stdout == ""
    assert "docker went away" in done.stderr and GRADESCOPE_FAILURE in done.stderr


def test_an_infrastructure_error_is_still_a_json_document(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Is the default JSON output for an infrastructure error unchanged (status error, exit 0)?"""
    done = _run(monkeypatch, tmp_path, InfrastructureError("docker went away"))
    assert done.exit_code == 0
    assert json.loads(done.stdout)["status"] == "error"


def test_text_format_summarises_deliverables_then_failed_tests(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Any) -> None:
    """Does --format text print the total, a line per deliverable, then each failed test with its message?"""
    done = _run(monkeypatch, tmp_path, result(), "--format", "text")
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    assert lines[0] == "autograd: 5 / 15 (graded, 1.2 s)"
    assert any(line.strip().startswith("Deliverable one") and "5 / 15" in line and "1/3 tests passed" in line
               for line in lines)
    failed = lines[lines.index("Failed tests:") + 1:]
    assert failed[0].strip() == "Deliverable one: test_secret [failed, 0 / 5]"
    assert failed[1].strip() == HIDDEN_OUTPUT
    assert "test_shown" not in "\n".join(failed)


def test_pipes_still_get_json_by_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Without --format and with output to a pipe, is the JSON document printed as before?"""
    done = _run(monkeypatch, tmp_path, result())
    assert json.loads(done.stdout) == result().to_dict()
