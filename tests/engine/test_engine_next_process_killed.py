"""The next test's process, forked ahead while a test runs (`worker/sandbox/testprocs.py`): when that test kills it,
does the next test still run, in a fresh process, rather than lose its points to a death it had no part in?"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.engine.test_engine_kept_processes import MANIFEST, statuses
from worker.engine.grade import grade
from worker.engine.manifest import load_assignment
from worker.engine.runners import make_runner

TESTS = '''
import pytest
pytestmark = pytest.mark.deliverable("a")

def test_kills_the_next_process(student):
    assert student.kill_the_others() >= 1, "no process waiting for the next test was seen"

def test_after_it(student):
    assert student.answer() == 42
'''

TESTS_B = '''
import pytest
pytestmark = pytest.mark.deliverable("b")

def test_other_deliverable(student):
    assert student.answer() == 42
'''

# The post-import process holds 600 MB of its own, so a process forked from it takes tens of milliseconds to be
# torn down once killed: the next test's request comes while the killed one still holds its end of the pipe that
# starts it (where it came later, the write failed and a fresh one was forked: that path never was at fault).
SOLUTION = '''
import os, signal, time
BALLAST = bytearray(b"x") * (600 << 20)

def kill_the_others():
    """Kill every process this pid namespace shows but this one and its init: the next test's, forked ahead."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        others = [int(e) for e in os.listdir("/proc") if e.isdigit() and int(e) not in (1, os.getpid())]
        if others:
            break
        time.sleep(0.01)  # (it is forked just after this test's process started)
    for pid in others:
        os.kill(pid, signal.SIGKILL)
    return len(others)

def answer():
    return 42
'''


@pytest.mark.parametrize("runner, sandbox", [("local", "fork"), ("local", "fresh"), ("docker", "fork")])
def test_a_next_process_killed_by_the_test_before_it_costs_that_test_nothing(
        tmp_path: Path, runner: str, sandbox: str, request: pytest.FixtureRequest) -> None:
    """When a test kills the process waiting for the next test, and the next test's request comes while that
    process is still being torn down, is the next test graded in a fresh process, not read as killed for going over
    the memory limit?"""
    if runner == "docker" and not request.getfixturevalue("docker_ready"):
        pytest.skip("no Docker engine")
    (tmp_path / "assignment.toml").write_text(MANIFEST.format(fresh="test"))
    (tmp_path / "test_a.py").write_text(TESTS)
    (tmp_path / "test_b.py").write_text(TESTS_B)
    result = grade(load_assignment(tmp_path), {"solution.py": textwrap.dedent(SOLUTION).encode()},
                   make_runner(runner, sandbox=sandbox))
    assert set(statuses(result).values()) == {"passed"}, statuses(result)
    assert result.environment["sandboxes"] == 1, result.environment  # no sandbox was lost on the way
