"""A test's process parked for a later test of its deliverable: when another deliverable's tests come in between
(its tests of a less visible isolation group come after every visible test), the process waits, and serves that
later test if it is still as it started and still there; otherwise the later test gets a fresh fork."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.engine.test_engine_kept_processes import MANIFEST, statuses
from tests.engine.test_engine_kept_processes import SOLUTION as KEPT_SOLUTION
from worker.engine.grade import grade
from worker.engine.manifest import load_assignment
from worker.engine.result import GradeResult
from worker.engine.runners import make_runner

# Sorted by the judge: test_visible (a), test_between (b), then test_later (a, after_due_date).
TESTS_A = '''
import pytest
pytestmark = pytest.mark.deliverable("a")

@pytest.mark.visibility("after_due_date")
def test_later(student):
    assert student.bump() == {later}, "{why}"

def test_visible(student):
    student.{leave}()
    assert student.bump() == 1
'''

TESTS_B = '''
import pytest
pytestmark = pytest.mark.deliverable("b")

def test_between(student):
    student.{between}()
    assert student.bump() == 1, "a process of another deliverable"
'''

# The kept-process tests' solution (bump(), nothing(), grad_mode() among others), and one more function.
SOLUTION = KEPT_SOLUTION + '''
def kill_the_others():
    import os
    # Everything this pid namespace shows but this process and its init: the parked one among them.
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in (1, os.getpid()):
            try:
                os.kill(int(entry), signal.SIGKILL)
            except OSError:
                pass
'''


def grade_parked(tmp_path: Path, leave: str = "nothing", between: str = "nothing", later: int = 2,
                 why: str = "not the parked process") -> GradeResult:
    """Grade SOLUTION against the tests above (local runner, forked sandboxes, a cold judge)."""
    (tmp_path / "assignment.toml").write_text(MANIFEST.format(fresh="deliverable"))
    (tmp_path / "test_a.py").write_text(TESTS_A.format(leave=leave, later=later, why=why))
    (tmp_path / "test_b.py").write_text(TESTS_B.format(between=between))
    return grade(load_assignment(tmp_path), {"solution.py": textwrap.dedent(SOLUTION).encode()},
                 make_runner("local", sandbox="fork"))


def test_a_deliverable_s_later_test_is_served_by_its_parked_process(tmp_path: Path) -> None:
    """With another deliverable's test in between, does the deliverable's after_due_date test run in the process
    of its visible test (its state carries on), so that only two processes are forked in all?"""
    result = grade_parked(tmp_path)
    assert set(statuses(result).values()) == {"passed"}, statuses(result)
    assert result.environment["test_processes"] == 2, result.environment
    assert result.environment["sandboxes"] == 1, result.environment


def test_a_process_left_changed_is_not_parked(tmp_path: Path) -> None:
    """When the visible test leaves grad mode off, does the later test get a fresh process instead?"""
    result = grade_parked(tmp_path, leave="grad_mode", later=1, why="the process of a test that left grad mode off")
    assert set(statuses(result).values()) == {"passed"}, statuses(result)
    assert result.environment["test_processes"] == 3, result.environment


def test_a_parked_process_killed_meanwhile_is_replaced_by_a_fresh_one(tmp_path: Path) -> None:
    """When the test in between kills every other process it can see (the parked one too), is the later test
    still graded, in a fresh process, and nothing else lost?"""
    result = grade_parked(tmp_path, between="kill_the_others", later=1, why="a process that should be dead")
    assert set(statuses(result).values()) == {"passed"}, statuses(result)
    assert result.environment["test_processes"] == 3, result.environment
    assert result.environment["sandboxes"] == 1, result.environment
