"""What a submission printed while it was being imported, when that import failed: is it shown with every test and
in the result's summary, whether the import raised (its reply carries the output) or ended its sandbox (a crash, a
timeout: no reply, and the judge reads the sandbox's stderr, where the import's output is echoed)?"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.engine.test_engine_kept_processes import MANIFEST
from tests.support.sandbox_support import RUNNER_PATHS
from worker.engine.grade import grade
from worker.engine.manifest import load_assignment
from worker.engine.result import GradeResult
from worker.engine.runners import child_cgroup, make_runner

TESTS_A = '''
import pytest
pytestmark = pytest.mark.deliverable("a")

def test_first(student):
    assert student.answer() == 42

def test_second(student):
    assert student.answer() == 42
'''

TESTS_B = '''
import pytest
pytestmark = pytest.mark.deliverable("b")

def test_other_deliverable(student):
    assert student.answer() == 42
'''

PRINTS = '''
import os, sys, time

def answer():
    return 42

print("loading the weights")
print("half way there", file=sys.stderr)
'''

FLOOD = """
import mmap
flood = mmap.mmap(-1, 2048 << 20)  # written page by page; 2 GiB, twice the limit
for at in range(0, len(flood), mmap.PAGESIZE):
    flood[at] = 1
"""

# How the import ends: the statement, the first test's status(es), and what its message says.
ENDS = {
    "exits": ("os._exit(3)", {"crashed"}, "ended unexpectedly (exit code 3) while importing the submission"),
    "sleeps": ("time.sleep(600)", {"timeout"}, "timed out"),
    # Written, not just reserved; stops at 2 GiB (twice the limit), so a limit that does not hold shows as a pass.
    # The memory cgroup kills the sandbox (its stderr tail shows the output), or the local runner's data rlimit
    # makes the allocation raise MemoryError (the reply carries it).
    "hoards": ("hoard = [bytearray(b'\\x01') * (64 << 20) for _ in range(32)]", {"memory", "error"}, "memory"),
    # Shared memory, which no data rlimit counts: only the sandbox's memory cgroup stops it, by killing the importing
    # process (SIGKILL) however the runner reports that end; the cgroup's count says it was the memory limit.
    "floods": (FLOOD, {"memory"}, "ran out of memory (limit 1024 mb) while importing the submission"),
}


def graded(tmp_path: Path, solution: str, runner: str, sandbox: str) -> GradeResult:
    (tmp_path / "assignment.toml").write_text(MANIFEST.format(fresh="test"))
    (tmp_path / "test_a.py").write_text(TESTS_A)
    (tmp_path / "test_b.py").write_text(TESTS_B)
    return grade(load_assignment(tmp_path), {"solution.py": textwrap.dedent(solution).encode()},
                 make_runner(runner, sandbox=sandbox))


def messages(result: GradeResult) -> dict[str, tuple[str, str]]:
    return {t.name: (t.status, t.output) for d in result.deliverables for t in d.tests}


@pytest.mark.parametrize("end", sorted(ENDS))
@pytest.mark.parametrize("runner, sandbox", RUNNER_PATHS)
def test_what_an_import_printed_before_it_ended_its_sandbox_is_shown_with_every_test(
        tmp_path: Path, runner: str, sandbox: str, end: str, request: pytest.FixtureRequest) -> None:
    """An import that prints (to stdout and to stderr) and then exits, sleeps past the limit or takes more than
    its memory (private, or shared, which only the memory cgroup bounds): does the first test say how it ended, and
    does every test, and the summary, show what it printed, in order (and nothing the sandbox's own tools said: a
    fresh local sandbox's unshare cannot pass the memory cgroup's SIGKILL on, and says so on its stderr)?"""
    if runner == "docker" and not request.getfixturevalue("docker_ready"):
        pytest.skip("no Docker engine")
    if end == "floods" and runner == "local" and not child_cgroup.possible():
        pytest.skip("no memory cgroup of its own for a local sandbox on this host (not root, or not cgroup v1)")
    statement, statuses, reason = ENDS[end]
    result = graded(tmp_path, PRINTS + statement + "\n", runner, sandbox)
    got = messages(result)
    printed = "--- your code printed ---\nloading the weights\nhalf way there"
    first_status, first = got["test_first"]
    assert first_status in statuses and reason in first.lower(), got
    # (An interpreter out of memory may print a line of its own after it: 3.11's "SystemError: deallocated
    # bytearray object has exported buffers", on the forked Docker path.)
    assert printed in first and "unshare" not in first, first
    for name in ("test_second", "test_other_deliverable"):
        later_status, later = got[name]
        # ("could not be imported: <the first test's reason>", or the exception the import raised, as the first's)
        assert later_status == "error" and "imported" in later and "solution.py" in later, got
        assert printed in later, later
    assert result.score == 0 and result.message.startswith("Your submission could not be run"), result.message
    assert printed in result.message, result.message
    assert result.import_failure.startswith("solution.py") and printed in result.import_failure, result.import_failure


def test_what_an_import_printed_before_it_raised_is_shown_with_every_test(tmp_path: Path) -> None:
    """An import that prints and then raises: is its output, which its reply carries, shown below the exception
    with every test and in the summary?"""
    result = graded(tmp_path, PRINTS + "raise ValueError('row 4 has 3 columns')\n", "local", "fork")
    printed = "--- your code printed ---\nloading the weights\nhalf way there"
    for name, (status, output) in messages(result).items():
        assert status == "error", (name, output)
        assert "solution.py raised ValueError while being imported (line 9): row 4 has 3 columns" in output, output
        assert 'solution.py", line 9, in <module>' in output, output
        assert "student_server.py" not in output, f"the traceback shows the sandbox's own code: {output}"
        assert output.endswith(printed), (name, output)
    assert result.message.endswith(printed) and result.import_failure.endswith(printed), result.import_failure


def test_an_import_that_printed_nothing_shows_no_printed_section(tmp_path: Path) -> None:
    """And an import that fails without printing anything: is there no empty "your code printed" below it?"""
    result = graded(tmp_path, "import os\nos._exit(3)\n", "local", "fork")
    for name, (status, output) in messages(result).items():
        assert "could not be imported" in output or "ended unexpectedly" in output, (name, status, output)
        assert "your code printed" not in output, (name, output)
    assert "your code printed" not in result.message, result.message
    assert "ended unexpectedly (exit code 3)" in result.import_failure, result.import_failure
