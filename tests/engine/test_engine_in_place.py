"""A submission whose import starts a thread: a fork of its post-import process would lack that thread (and on a
GPU host torch refuses autograd and CUDA in such a fork), so each test runs in the post-import process itself,
in a sandbox that imported the submission afresh. Is every test still isolated, limited and timed as in a fork?"""

from __future__ import annotations

import textwrap
from pathlib import Path

from worker.engine.grade import grade
from worker.engine.manifest import load_assignment
from worker.engine.result import GradeResult
from worker.engine.runners import make_runner

MANIFEST = """
id = "inplace"
title = "Tests in place"
files = ["solution.py"]
[limits]
test_timeout = 2
run_timeout = 90
[[deliverables]]
id = "a"
title = "Part A"
points = 2
[[deliverables]]
id = "b"
title = "Part B"
points = 1
"""

TESTS_A = '''
import pytest
pytestmark = pytest.mark.deliverable("a")

def test_the_worker_thread_answers(student):
    assert student.on_worker(20) == 21

def test_grad_mode_left_off(student):
    student.grad_mode_off()
    assert student.bump() == 1, "a process that served another test"

def test_next_test_of_the_deliverable(student):
    assert student.grad_enabled(), "grad mode as the last test left it"
    assert student.bump() == 1, "a process that served another test"

def test_slow_call(student):
    assert student.nap(1.5) == 1
'''

TESTS_B = '''
import pytest
pytestmark = pytest.mark.deliverable("b")

def test_over_its_cpu_limit(student):
    student.spin(5)

def test_after_a_timeout(student):
    assert student.on_worker(1) == 2
'''

SOLUTION = '''
import concurrent.futures, time, torch
time.sleep({import_seconds})
POOL = concurrent.futures.ThreadPoolExecutor(max_workers=1)
POOL.submit(int).result()  # the worker thread runs from here on
COUNT = [0]
def on_worker(n):
    return POOL.submit(lambda: n + 1).result(timeout=10)
def bump():
    COUNT[0] += 1
    return COUNT[0]
def grad_mode_off():
    torch.set_grad_enabled(False)
def grad_enabled():
    return torch.is_grad_enabled()
def nap(seconds):
    time.sleep(seconds)
    return bump()
def spin(seconds):
    start = time.process_time()
    while time.process_time() - start < seconds:
        pass
'''


def grade_with(tmp_path: Path, import_seconds: float = 0.0) -> GradeResult:
    """Grade SOLUTION against the two deliverables above (local runner, forked sandboxes, a cold judge)."""
    (tmp_path / "assignment.toml").write_text(MANIFEST)
    (tmp_path / "test_a.py").write_text(TESTS_A)
    (tmp_path / "test_b.py").write_text(TESTS_B)
    solution = textwrap.dedent(SOLUTION.format(import_seconds=import_seconds)).encode()
    return grade(load_assignment(tmp_path), {"solution.py": solution}, make_runner("local"))


def statuses(result: GradeResult) -> dict[str, str]:
    """{test name: status}, failures with their message."""
    return {t.name: t.status + (f": {t.output}" if t.status != "passed" else "")
            for d in result.deliverables for t in d.tests}


def test_each_test_runs_where_the_import_left_its_thread_and_nothing_of_another_test(tmp_path: Path) -> None:
    """Does the import's worker thread serve every test, does each test start from a fresh import (a test that
    switches grad mode off costs only itself), and does a test over its CPU limit time out at that limit without
    costing the next one?"""
    result = grade_with(tmp_path)
    assert result.environment["test_processes"] == 6  # one per test: each in a sandbox of its own
    found = statuses(result)
    timeout = found.pop("test_over_its_cpu_limit")
    assert timeout.startswith("timeout: timed out: used more than 2 s of CPU time"), timeout
    assert set(found.values()) == {"passed"}, found


def test_importing_again_for_each_test_is_not_the_tests_time(tmp_path: Path) -> None:
    """With an import of 1.8 s, does a test that naps 1.5 s of its 2 s still pass in a sandbox imported afresh for
    it (the first import is the first test's time, as ever; the later ones are ours)?"""
    found = statuses(grade_with(tmp_path, import_seconds=1.8))
    assert found["test_slow_call"] == "passed", found
    assert found["test_next_test_of_the_deliverable"] == "passed", found
