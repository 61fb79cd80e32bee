"""The launcher's backstop on a judge process: does it wait out the sandbox starts and imports that the judge's
own clocks did not count, and still kill a judge that is itself stuck?"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import worker.engine.grade as grading
from worker.engine.errors import InfrastructureError
from worker.engine.judge.launch import ColdJudge, WarmJudge
from worker.engine.manifest import load_assignment
from worker.engine.runners import make_runner

SLACK = 2.0  # the backstop's slack in these tests, instead of the two minutes a worker allows

MANIFEST = """
id = "backstop"
title = "Backstop"
files = ["solution.py"]
fresh_process = "test"
[limits]
test_timeout = 5
run_timeout = {run_timeout}
[[deliverables]]
id = "a"
title = "Part A"
points = 1
"""

# Six tests on a submission whose import takes 2 s and starts a thread: each test runs in a sandbox that imports
# it afresh, 10 s of imports again that are not the run's time (its limit is 10 s), so the judge runs past
# run_timeout plus the slack, though it never stops making progress.
TESTS = "".join(f"\ndef test_{i}(student):\n    assert student.on_worker({i}) == {i + 1}\n" for i in range(6))

SOLUTION = '''
import concurrent.futures, time
time.sleep(2)
POOL = concurrent.futures.ThreadPoolExecutor(max_workers=1)
POOL.submit(int).result()
def on_worker(n):
    return POOL.submit(lambda: n + 1).result(timeout=10)
'''

# A reference test that hangs in the judge itself, outside every call into the student's code: no clock of the
# judge's can stop it.
STUCK_TEST = "\nimport time\n\ndef test_stuck(student):\n    time.sleep(600)\n"


@pytest.fixture
def short_slack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grading, "OUTER_SLACK", SLACK)


@pytest.fixture(params=["cold", "warm"])
def judge(request: pytest.FixtureRequest) -> Iterator[ColdJudge | WarmJudge]:
    launcher = ColdJudge() if request.param == "cold" else WarmJudge()
    yield launcher
    launcher.close()


def assignment_in(folder: Path, tests: str, run_timeout: int) -> Path:
    (folder / "assignment.toml").write_text(MANIFEST.format(run_timeout=run_timeout))
    (folder / "test_a.py").write_text('import pytest\npytestmark = pytest.mark.deliverable("a")\n' + tests)
    return folder


@pytest.mark.usefixtures("short_slack")
def test_a_judge_that_imports_again_for_each_test_outlasts_the_first_deadline(
        tmp_path: Path, judge: ColdJudge | WarmJudge) -> None:
    """Does a judge whose tests each import the submission afresh (12 s past its start, against a backstop of
    run_timeout 10 s plus a 2 s slack) finish and score every test, the backstop moving by what it gave back?"""
    assignment = load_assignment(assignment_in(tmp_path, TESTS, run_timeout=10))
    result = grading.grade(assignment, {"solution.py": textwrap.dedent(SOLUTION).encode()}, make_runner("local"),
                           judge=judge)
    assert [t.status for d in result.deliverables for t in d.tests] == ["passed"] * 6
    assert result.environment["test_processes"] == 6  # one sandbox, imported afresh, per test
    assert result.execution_time > 10 + SLACK  # it did run past the backstop's first deadline


@pytest.mark.usefixtures("short_slack")
def test_a_judge_stuck_outside_the_students_calls_is_still_killed(tmp_path: Path,
                                                                 judge: ColdJudge | WarmJudge) -> None:
    """Is a judge that hangs in a reference test of its own (no sandbox starts, nothing given back) killed at
    run_timeout plus the slack, as an infrastructure failure the worker retries?"""
    assignment = load_assignment(assignment_in(tmp_path, STUCK_TEST, run_timeout=3))
    with pytest.raises(InfrastructureError, match=r"did not finish within 5 s$"):
        grading.grade(assignment, {"solution.py": b"X = 1\n"}, make_runner("local"), judge=judge)
