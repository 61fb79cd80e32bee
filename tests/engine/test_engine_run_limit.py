"""The run's limit counts the run's own time: at its deadline the deadline moves on by what a busy machine kept
tasks waiting for a CPU (the kernel's CPU pressure figures), never by more than WALL_FACTOR times the limit in all.
The rule on given figures, the kernel's figures, and the judge on a real sandbox, idle and busy."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.support.busy import busy_cores
from worker.engine.grade import grade
from worker.engine.judge.launch import WarmJudge
from worker.engine.judge.overtime import WALL_FACTOR
from worker.engine.judge.runclock import MIN_STEP, PRESSURE, RunClock, stalled_seconds
from worker.engine.manifest import load_assignment
from worker.engine.result import GradeResult
from worker.engine.runners import make_runner


class Figures:
    """The kernel's stall total and the monotonic clock as a test sets them."""

    def __init__(self, stalled: float | None = 0.0) -> None:
        self.stalled, self.now = stalled, 100.0

    def read(self) -> float | None:
        return self.stalled

    def clock(self) -> float:
        return self.now


def clock_for(figures: Figures, limit: float) -> tuple[RunClock, list[float]]:
    """A run of `limit` seconds started now on `figures`; and what it reports to the launcher, in order."""
    reported: list[float] = []
    run = RunClock(figures.read, figures.clock)
    run.report = reported.append
    run.start(limit)
    return run, reported


def test_is_a_run_on_an_idle_machine_over_at_its_limit() -> None:
    """Where nothing waited for a CPU meanwhile (or less than MIN_STEP), the deadline stays: the run is over."""
    figures = Figures(stalled=50.0)
    run, reported = clock_for(figures, 10)
    figures.now = 109.9
    assert not run.over()
    figures.now, figures.stalled = 110.0, 50.0 + MIN_STEP / 2
    assert run.over() and run.deadline == 110.0 and reported == []


def test_does_a_busy_machines_wait_move_the_deadline_on_up_to_three_times_the_limit() -> None:
    """The deadline moves on by the stall time since the run began, less what it moved already, each time it is
    reached, and by (WALL_FACTOR - 1) times the limit in all; the launcher is told each move with what was given
    back for sandbox starts."""
    figures = Figures(stalled=50.0)
    run, reported = clock_for(figures, 10)
    run.give_back(2.0)  # a sandbox's start: ours
    assert run.deadline == 112.0 and reported == [2.0]
    figures.now, figures.stalled = 112.0, 56.0
    assert not run.over() and run.deadline == 118.0 and reported == [2.0, 8.0]
    figures.now, figures.stalled = 118.0, 59.0
    assert not run.over() and run.deadline == 121.0
    figures.now, figures.stalled = 121.0, 500.0
    assert not run.over() and run.deadline == 112.0 + (WALL_FACTOR - 1) * 10
    figures.now = run.deadline
    assert run.over()
    assert reported[-1] == 2.0 + (WALL_FACTOR - 1) * 10


def test_is_a_run_on_a_kernel_without_pressure_figures_over_at_its_limit() -> None:
    """Without the kernel's figures (before Linux 4.20, psi=0) the wall clock alone ends the run, as before."""
    figures = Figures(stalled=None)
    run, _ = clock_for(figures, 10)
    figures.now = 110.0
    assert run.over()
    figures = Figures(stalled=5.0)
    run, _ = clock_for(figures, 10)
    figures.now, figures.stalled = 110.0, None  # figures that went away
    assert run.over()


def test_are_the_kernels_stall_figures_read_in_seconds(tmp_path: Path) -> None:
    """The "some" line's total (microseconds) in seconds; None for a missing or garbled file."""
    pressure = tmp_path / "cpu"
    pressure.write_text("some avg10=1.00 avg60=0.50 avg300=0.10 total=2500000\n"
                        "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
    assert stalled_seconds(str(pressure)) == 2.5
    pressure.write_text("some avg10=1.00 total=lots\n")
    assert stalled_seconds(str(pressure)) is None
    assert stalled_seconds(str(tmp_path / "none")) is None
    if Path(PRESSURE).exists():
        first = stalled_seconds()
        assert first is not None and first >= 0
        second = stalled_seconds()
        assert second is not None and second >= first


MANIFEST = """
id = "run-limit"
title = "Run limit"
files = ["solution.py"]
[limits]
test_timeout = 3
run_timeout = {run_timeout}
[[deliverables]]
id = "a"
title = "Part A"
points = 4
"""

TESTS = '''
import pytest
pytestmark = pytest.mark.deliverable("a")

@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_work(student, n):
    assert student.work() == 1
'''


def grade_work(tmp_path: Path, run_timeout: int, work: str, judge: WarmJudge | None = None) -> GradeResult:
    """Four tests that each call the solution's work(), which runs `work` and returns 1."""
    (tmp_path / "assignment.toml").write_text(MANIFEST.format(run_timeout=run_timeout))
    (tmp_path / "test_work.py").write_text(TESTS)
    solution = f"import time\n\ndef work():\n{textwrap.indent(work, '    ')}\n    return 1\n"
    return grade(load_assignment(tmp_path), {"solution.py": solution.encode()}, make_runner("local"), judge=judge)


def statuses(result: GradeResult) -> list[str]:
    return [test.status for test in result.deliverables[0].tests]


def test_does_a_run_that_sleeps_past_its_limit_end_there_and_never_past_three_times_it(tmp_path: Path) -> None:
    """Four calls that each sleep 1.8 s (within their 3 s limit) in a run of 2 s: the first passes, and the run ends
    by 6 s (three times its limit) however busy the machine: the test in progress times out at the run's limit,
    and each later one times out unstarted, saying so (not as a submission that could not be imported: it was).
    (Sleeping waits for no CPU: on an idle machine the run ends at 2 s, as the figures above show; what other tasks
    waited meanwhile may move it on, never past the cap.)"""
    result = grade_work(tmp_path, 2, "time.sleep(1.8)")
    tests = result.deliverables[0].tests
    ended = next((i for i, test in enumerate(tests) if test.status != "passed"), None)
    assert ended is not None and ended >= 1, [(test.status, test.output) for test in tests]
    assert tests[ended].status == "timeout" and "the whole run went over its 2 s limit in work()" in tests[ended].output
    for test in tests[ended + 1:]:
        assert test.status == "timeout", (test.status, test.output)
        assert "not run: the whole run had gone over its 2 s limit before this test called work()" in test.output
    assert "could not be" not in result.message, result.message


SPIN = "end = time.process_time() + 0.25\nwhile time.process_time() < end:\n    pass"


@pytest.mark.skipif(not Path(PRESSURE).exists(), reason="this kernel keeps no CPU pressure figures")
def test_does_a_busy_machine_push_no_correct_solutions_run_over_its_limit(tmp_path: Path) -> None:
    """Four calls that each need 0.25 s of CPU, in a run of 3 s: on an idle machine the run keeps inside its
    limit; on one whose cores are each busy four times over its tests take longer than the limit in wall-clock
    time, and still every test passes (before, the run was over at 3 s and the tests left timed out). A warm
    judge, as a worker has, graded the same submission idle first: the load meets the run, not the start-up."""
    judge = WarmJudge()
    try:
        idle = grade_work(tmp_path, 3, SPIN, judge)
        with busy_cores(4):
            busy = grade_work(tmp_path, 3, SPIN, judge)
    finally:
        judge.close()
    assert statuses(idle) == ["passed"] * 4, [test.output for test in idle.deliverables[0].tests]
    tests = busy.deliverables[0].tests
    assert statuses(busy) == ["passed"] * 4, [test.output for test in tests]
    assert sum(test.duration for test in tests) > 3, "the machine was not busy enough to take the run past its limit"
