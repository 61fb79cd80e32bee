"""`grader grade`: the exact command-line contract other tools depend on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "reference_tests" / "autograd" / "examples"


def grader(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed `grader` console script."""
    exe = Path(sys.executable).with_name("grader")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["grade", "--assignment", "nope", "x.py"], "unknown assignment 'nope'"),
        (["grade", "--assignment", "autograd", "missing.py"], "no such file: missing.py"),
        (["grade", "--assignment", "autograd", "reference_tests"], "reference_tests is a directory: give the file"),
        (["grade", "--assignment", "autograd", "--runner", "bogus", "x.py"], "'bogus' is not one of"),
        (["grade", "--assignment", "autograd", "--format", "xml", "x.py"], "'xml' is not one of"),
        (["grade", "--assignment", "autograd"], "Missing argument"),
        (["grade", "x.py"], "Missing option '--assignment'"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args: list[str], says: str) -> None:
    """Does every usage error exit 2 with a single line on stderr and nothing on stdout?"""
    done = grader(*args)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], done.stderr


def test_wrong_file_name_for_multi_file_use_is_refused(tmp_path: Path) -> None:
    """Is a file the assignment does not accept refused (exit 2) when several files are given?"""
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("x = 1\n")
    b.write_text("y = 2\n")
    done = grader("grade", "--assignment", "autograd", "--runner", "local", str(a), str(b))
    assert done.returncode == 2 and "accepts solution.py" in done.stderr


def test_grade_prints_the_result_document() -> None:
    """Does grading the reference print the JSON result with 100/100 and exit 0?"""
    done = grader("grade", "--assignment", "autograd", "--runner", "local", str(EXAMPLES / "reference.py"))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "graded" and result["score"] == 100.0 and result["max_score"] == 100.0
    assert [d["id"] for d in result["deliverables"]] == [
        "simple_gradients", "multivariate_gradients", "no_grad", "zeroing_gradients", "gradient_checking"]
    test = result["deliverables"][0]["tests"][0]
    assert set(test) == {"name", "status", "score", "max_score", "visibility", "output"}


def test_a_zero_is_still_exit_0_and_gradescope_format() -> None:
    """Does a failing submission exit 0 (a result was produced) and print Gradescope's schema on request?"""
    done = grader("grade", "--assignment", "autograd", "--runner", "local", "--format", "gradescope",
                  str(EXAMPLES / "starter.py"))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["score"] == 0.0 and result["tests"]
    assert {"name", "score", "max_score", "status", "output", "visibility"} <= set(result["tests"][0])
    assert "not implemented yet" in result["tests"][0]["output"]


def test_prairielearn_format_scores_a_fraction() -> None:
    """Does --format prairielearn give the score as a fraction with per-test points?"""
    done = grader("grade", "--assignment", "autograd", "--runner", "local", "--format", "prairielearn",
                  str(EXAMPLES / "simple_gradients_broken.py"))
    result = json.loads(done.stdout)
    assert result["gradable"] is True and result["score"] == pytest.approx(0.8)
    assert all({"name", "points", "max_points", "message"} <= set(t) for t in result["tests"])


def test_syntax_error_message_names_the_line() -> None:
    """Does a syntax error come back as a plain message with the line number?"""
    done = grader("grade", "--assignment", "autograd", "--runner", "local", str(EXAMPLES / "syntax_error.py"))
    result = json.loads(done.stdout)
    assert result["score"] == 0.0 and "SyntaxError" in result["message"] and "line" in result["message"]


def test_grade_without_the_worker_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a module of the `worker` extra, does `grader grade` exit 2 with one line naming the extra?"""
    from click.testing import CliRunner

    from grader.cli import engine

    monkeypatch.setattr(engine, "WORKER_EXTRA_MODULES", ("no_such_module_for_this_test",))
    done = CliRunner().invoke(engine.grade_command, ["--assignment", "autograd", "x.py"])
    assert done.exit_code == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "worker extra" in lines[0] and "no_such_module_for_this_test" in lines[0], lines
