"""A test's process kept for the next test of its deliverable (`fresh_process = "deliverable"`): while it is as it
started it serves the next test, and anything a test leaves changed still costs only that test."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from worker.engine.grade import grade
from worker.engine.manifest import load_assignment
from worker.engine.result import GradeResult
from worker.engine.runners import make_runner

MANIFEST = """
id = "kept"
title = "Kept processes"
files = ["solution.py"]
fresh_process = "{fresh}"
[limits]
test_timeout = 2
run_timeout = 90
[[deliverables]]
id = "a"
title = "Part A"
points = 3
[[deliverables]]
id = "b"
title = "Part B"
points = 1
"""

# Each test asserts how many calls to bump() its process has seen: 1 in a fresh process.
TESTS_A = '''
import pytest
pytestmark = pytest.mark.deliverable("a")

def test_first(student):
    assert student.bump() == 1

def test_second(student):
    student.{leave}()
    assert student.bump() == 2, "not the first test's process"

def test_third(student):
    assert student.bump() == {third}, "the process of a test that left something changed"
'''

TESTS_B = '''
import pytest
pytestmark = pytest.mark.deliverable("b")

def test_other_deliverable(student):
    assert student.bump() == 1, "a process of another deliverable"
'''

SOLUTION = '''
import signal, sys, threading, time, torch
COUNT = [0]
def bump():
    COUNT[0] += 1
    return COUNT[0]
def nothing():
    pass
def grad_mode():
    torch.set_grad_enabled(False)
def default_dtype():
    torch.set_default_dtype(torch.float64)
def monkeypatch():
    torch.Tensor.backward = lambda self, *args, **kwargs: None
def thread():
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
def signal_handler():
    signal.signal(signal.SIGXCPU, signal.SIG_IGN)
def import_path():
    sys.path.insert(0, "/tmp")
def default_device():
    torch.set_default_device("cpu")
def print_options():
    torch.set_printoptions(precision=2)
def spin(seconds):
    start = time.process_time()
    while time.process_time() - start < seconds:
        pass
    return bump()
'''


def grade_with(tmp_path: Path, fresh: str = "deliverable", leave: str = "nothing", third: int = 3,
               tests_a: str = TESTS_A) -> GradeResult:
    """Grade SOLUTION against the two deliverables above (local runner, forked sandboxes, a cold judge)."""
    (tmp_path / "assignment.toml").write_text(MANIFEST.format(fresh=fresh))
    (tmp_path / "test_a.py").write_text(tests_a.format(leave=leave, third=third))
    (tmp_path / "test_b.py").write_text(TESTS_B)
    return grade(load_assignment(tmp_path), {"solution.py": textwrap.dedent(SOLUTION).encode()},
                 make_runner("local"))


def statuses(result: GradeResult) -> dict[str, str]:
    """{test name: status}, failures with their message."""
    return {t.name: t.status + (f": {t.output}" if t.status != "passed" else "")
            for d in result.deliverables for t in d.tests}


def test_the_tests_of_a_deliverable_share_one_process_while_it_stays_as_it_started(tmp_path: Path) -> None:
    """Do a deliverable's tests run in one process (its state carries on), and does the next deliverable get a
    fresh one?"""
    result = grade_with(tmp_path)
    assert set(statuses(result).values()) == {"passed"}, statuses(result)
    assert result.environment["test_processes"] == 2


def test_a_fresh_process_per_test_stays_available(tmp_path: Path) -> None:
    """With fresh_process = "test", does every test start from the imported state again?"""
    result = grade_with(tmp_path, fresh="test")
    found = statuses(result)
    assert found["test_first"] == found["test_other_deliverable"] == "passed", found
    assert found["test_second"].startswith("failed: not the first test's process"), found
    assert result.environment["test_processes"] == 4


@pytest.mark.parametrize("leave", ["grad_mode", "default_dtype", "monkeypatch", "thread", "signal_handler",
                                   "import_path", "default_device", "print_options"])
def test_a_test_that_leaves_global_state_changed_costs_only_itself(tmp_path: Path, leave: str) -> None:
    """When a test switches grad mode off, changes the default dtype, monkeypatches torch, leaves a thread,
    ignores SIGXCPU, changes the import path, sets a default device or changes how tensors print, does the
    next test of its deliverable get a fresh process?"""
    result = grade_with(tmp_path, leave=leave, third=1)
    assert set(statuses(result).values()) == {"passed"}, statuses(result)
    assert result.environment["test_processes"] == 3


SPINS = '''
import pytest
pytestmark = pytest.mark.deliverable("a")

def test_first(student):
    assert student.spin(1.2) == 1

def test_second(student):
    assert student.spin(1.2) == 2, "not the first test's process"

def test_third(student):
    student.spin(5)
'''


def test_each_test_in_a_kept_process_has_its_own_cpu_limit(tmp_path: Path) -> None:
    """Does a kept process give the next test its full CPU limit (2 s each, 2.4 s used by two tests together),
    and does a test over its limit still time out at its own limit?"""
    result = grade_with(tmp_path, tests_a=SPINS)
    found = statuses(result)
    assert found["test_first"] == found["test_second"] == "passed", found
    assert found["test_third"].startswith("timeout: timed out: used more than 2 s of CPU time"), found
