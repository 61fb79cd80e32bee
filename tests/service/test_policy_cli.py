"""`grader policy`: extensions, overrides and grace days from the command line, and one-line errors with
exit status 2 on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.service.test_service_cli import grader


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with the demo course (DEMO101, autograd, two students)."""
    path = tmp_path_factory.mktemp("policy-cli")
    assert grader(path, "demo").returncode == 0
    return path


def test_an_instructor_extends_a_student_and_sets_the_policy_from_the_cli(home: Path) -> None:
    """Do `policy set`, `policy extend`, `policy grace-days` and `policy show` work together?"""
    done = grader(home, "policy", "set", "autograd", "--field", "due=2030-03-07T23:59:00-05:00",
                  "--field", "late_penalty_per_day=10", "--field", "late_days=2", "--field", "max_submissions=4")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["due"] == "2030-03-08T04:59:00+00:00"
    extended = grader(home, "policy", "extend", "autograd", "student@example.edu", "--days", "2",
                      "--reason", "ill")
    assert extended.returncode == 0, extended.stderr
    assert "student@example.edu due 2030-03-10T04:59:00+00:00" in extended.stdout
    assert grader(home, "policy", "grace-days", "DEMO101", "3").stdout.strip() == "grace days: DEMO101 3"
    shown = grader(home, "policy", "show", "autograd").stdout
    assert '"max_submissions": 4' in shown and "extension: student@example.edu" in shown
    assert grader(home, "policy", "revoke", "autograd", "student@example.edu").returncode == 0
    steps = '[{"until": "2030-03-08T23:59:00Z", "credit": 80}, {"until": "2030-03-10", "credit": 50}]'
    stepped = grader(home, "policy", "set", "autograd", "--field", "due=2030-03-07T23:59:00Z", "--field",
                     f"late_steps={steps}")
    assert stepped.returncode == 0, stepped.stderr
    assert [step["credit"] for step in json.loads(stepped.stdout)["late_steps"]] == [80.0, 50.0]


@pytest.mark.parametrize(("args", "words"), [
    (("policy", "extend", "autograd", "student@example.edu"), "either a new due date or a number of extra days"),
    (("policy", "extend", "autograd", "nobody@example.edu", "--days", "1"), "no student"),
    (("policy", "extend", "autograd", "student@example.edu", "--due", "soon"), "ISO 8601"),
    (("policy", "set", "autograd", "--field", "colour=blue"), "unknown policy fields"),
    (("policy", "set", "autograd", "--field", "max_submissions"), "NAME=VALUE"),
    (("policy", "grace-days", "DEMO101", "lots"), "grace_days must be a whole number from 0 to 3,650, not 'lots'"),
    # late_steps is JSON on the command line (text reached the service as is: a traceback, 'str' object has no
    # attribute 'get')
    (("policy", "set", "autograd", "--field", "due=2030-03-07T23:59:00", "--field", "late_steps=2030-03-08:50"),
     'late_steps is JSON: [{"until": "<date>", "credit": <percent>}, ...]'),
    (("policy", "set", "autograd", "--field", "due=2030-03-07T23:59:00", "--field", 'late_steps={"credit": 50}'),
     "late_steps is a list of {until = <date>, credit = <percent>}"),
    (("policy", "set", "autograd", "--field", "due=2030-03-07T23:59:00", "--field",
      'late_steps=[{"until": "2030-03-09T00:00:00", "credit": true}]'), "a late step's credit must be a number"),
    # Numbers past their bounds: each would have overflowed a date (a traceback, or a 500 at the next upload) or
    # held the command for ever (a late step per day).
    (("policy", "grace-days", "DEMO101", "1e300"), "grace_days must be a whole number from 0 to 3,650"),
    (("policy", "set", "autograd", "--field", "cooldown_minutes=1e309"), "cooldown_minutes must be a number from 0 to"),
    (("policy", "set", "autograd", "--field", "cooldown_minutes=1e12"), "cooldown_minutes must be a number from 0 to"),
    (("policy", "set", "autograd", "--field", "cooldown_minutes=nan"), "cooldown_minutes must be a number from 0 to"),
    (("policy", "set", "autograd", "--field", "due=2030-03-07T23:59:00", "--field", "late_penalty_per_day=10",
      "--field", "late_days=1e300"), "late_days must be a whole number from 1 to 3,650"),
    (("policy", "extend", "autograd", "student@example.edu", "--days", "1e300"), "days must be a number from 0 to"),
    # Dates past 2999: late days or an extension added to them would not be a date (a traceback, and a 500 at
    # every upload after).
    (("policy", "set", "autograd", "--field", "due=9999-12-31T23:00:00", "--field", "late_penalty_per_day=10",
      "--field", "late_days=2"), "9999-12-31T23:00:00+00:00 is out of range: give a date from 1970 to 2999"),
    (("policy", "extend", "autograd", "student@example.edu", "--due", "9999-12-31T23:00:00-05:00"), "out of range"),
    (("policy", "show", "nope"), "unknown assignment"),
])
def test_bad_input_is_one_line_and_exit_status_2(home: Path, args: tuple[str, ...], words: str) -> None:
    """Is every bad request a single `grader: error:` line naming the problem, with exit status 2, and the policy
    and extensions left as they were?"""
    before = grader(home, "policy", "show", "autograd").stdout
    result = grader(home, *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("grader: error:") and words in lines[0], lines
    assert grader(home, "policy", "show", "autograd").stdout == before
