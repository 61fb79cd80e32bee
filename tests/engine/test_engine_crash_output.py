"""What a test's process printed before it died or timed out in the middle of a call
(`worker/sandbox/calloutput.py`, `worker/sandbox/testsignals.py`): is it shown with the test, as any call's output
is, and can no other test's process read it?"""

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

def test_exits_after_printing(student):
    assert student.say_then_exit() == 42

def test_dies_of_a_signal_after_printing(student):
    assert student.say_then_segfault() == 42

def test_computes_past_its_limit_after_printing(student):
    assert student.say_then_spin() == 42

def test_sleeps_past_its_limit_after_printing(student):
    assert student.say_then_sleep() == 42

def test_interrupts_itself(student):
    assert student.send_the_interrupt() == 42

def test_kills_itself_after_printing(student):
    assert student.say_then_kill_myself() == 42

{flood_test}
def test_keeps_the_handler_its_import_set(student):
    assert student.handler_is_mine(), "the sandbox's interrupt handler replaced the submission's own"

def test_prints_a_secret(student):
    assert student.print_and_find("MIRRORED-{secret}") >= 1, "the check cannot see a mirror: it proves nothing"

def test_finds_no_other_tests_output(student):
    assert student.find_printed() == 0, "this test's process could read what another test's process printed"
'''

# Left out where a local sandbox has no memory cgroup of its own: nothing but the host's memory would bound it.
FLOOD_TEST = '''
def test_floods_memory_after_printing(student):
    assert student.say_then_flood() == 42
'''

TESTS_B = '''
import pytest
pytestmark = pytest.mark.deliverable("b")

def test_other_deliverable(student):
    assert student.find_printed() == 0, "this test's process could read what another test's process printed"
'''

SOLUTION = '''
import ctypes, mmap, os, signal, sys, time

def _mine(signum, frame):
    pass

signal.signal(signal.SIGUSR1, _mine)

def say_then_sleep():
    print("waiting for the lock")
    time.sleep(600)

def send_the_interrupt():
    """The interrupt's handler in the post-import process (this process's parent), sent from the submission."""
    print("interrupting")
    os.kill(os.getppid(), signal.SIGUSR1)
    time.sleep(600)

def handler_is_mine():
    return signal.getsignal(signal.SIGUSR1) is _mine

def say_then_exit():
    print("checkpoint: x = 41")
    print("about to leave", file=sys.stderr)
    os._exit(3)

def say_then_kill_myself():
    print("giving up")
    os.kill(os.getpid(), signal.SIGKILL)

def say_then_flood():
    """Shared memory, which no data rlimit counts: the sandbox's memory cgroup's OOM killer takes this process."""
    print("flooding")
    flood = mmap.mmap(-1, 2048 << 20)
    for at in range(0, len(flood), mmap.PAGESIZE):
        flood[at] = 1
    return 42

def say_then_segfault():
    print("before the crash")
    os.kill(os.getpid(), signal.SIGSEGV)

def say_then_spin():
    for epoch in range(3):
        print("epoch", epoch)
    while True:
        pass

def find_printed():
    """How many shared anonymous mappings of this process hold what some test's process printed (MIRRORED-...)."""
    found = 0
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) < 6 or fields[1][3] != "s" or fields[1][0] != "r":
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            found += b"MIRRORED-" in ctypes.string_at(start, end - start)
    return found

def print_and_find(secret):
    print(secret)
    return find_printed()
'''


def outputs(result: GradeResult) -> dict[str, tuple[str, str]]:
    return {t.name: (t.status, t.output) for d in result.deliverables for t in d.tests}


@pytest.mark.parametrize("runner, sandbox", RUNNER_PATHS)
def test_what_a_crashed_call_printed_is_shown_and_no_other_test_can_read_it(
        tmp_path: Path, runner: str, sandbox: str, request: pytest.FixtureRequest) -> None:
    """When the student's function prints and then its process dies (os._exit, a signal, the CPU limit of a loop
    that never ends) or sleeps past its limit, does the test's message say how it died or timed out *and* show
    what it printed; and is what one test's process printed out of every other test's process's reach (the one
    forked while it ran, and another deliverable's)?"""
    if runner == "docker" and not request.getfixturevalue("docker_ready"):
        pytest.skip("no Docker engine")
    (tmp_path / "assignment.toml").write_text(MANIFEST.format(fresh="test"))
    counted = child_cgroup.possible()  # each sandbox in a memory cgroup of its own, whose OOM kills the judge reads
    flood = FLOOD_TEST if counted or runner == "docker" else ""
    (tmp_path / "test_a.py").write_text(TESTS_A.replace("{secret}", tmp_path.name).replace("{flood_test}", flood))
    (tmp_path / "test_b.py").write_text(TESTS_B)
    result = grade(load_assignment(tmp_path), {"solution.py": textwrap.dedent(SOLUTION).encode()},
                   make_runner(runner, sandbox=sandbox))
    got = outputs(result)
    status, output = got["test_exits_after_printing"]
    assert status == "crashed", got
    assert "ended unexpectedly (exit code 3)" in output, output
    assert output.endswith("--- your code printed ---\ncheckpoint: x = 41\nabout to leave"), output
    status, output = got["test_dies_of_a_signal_after_printing"]
    assert status == "crashed" and "(signal 11, SIGSEGV: a segmentation fault in native code)" in output, got
    assert output.endswith("--- your code printed ---\nbefore the crash"), output
    status, output = got["test_computes_past_its_limit_after_printing"]
    assert status == "timeout", got
    assert output.endswith("--- your code printed ---\nepoch 0\nepoch 1\nepoch 2"), output
    status, output = got["test_sleeps_past_its_limit_after_printing"]
    assert status == "timeout" and "it was not computing (waiting or sleeping)" in output, got
    assert output.endswith("--- your code printed ---\nwaiting for the lock"), output
    # The handler ends only the sender's own process, with the SIGKILL any code of the submission may send itself;
    # a sandbox's own memory cgroup, which counted no OOM kill, says it was not the memory limit.
    # (Without such a cgroup, the judge cannot tell: "most likely for going over the memory limit".)
    for name, fn, printed in (("test_interrupts_itself", "send_the_interrupt", "interrupting"),
                              ("test_kills_itself_after_printing", "say_then_kill_myself", "giving up")):
        status, output = got[name]
        if counted:
            assert status == "crashed", got
            assert f"killed (signal 9, SIGKILL) in {fn}(), not for going over the memory limit" in output, output
        else:
            assert status == "memory" and "most likely" in output, got
        assert output.endswith(f"--- your code printed ---\n{printed}"), output
    if flood:
        status, output = got["test_floods_memory_after_printing"]
        assert status == "memory" and "killed in say_then_flood()" in output, got
        assert "for going over the memory limit (1024 MB)" in output and (not counted or "likely" not in output), got
        assert output.endswith("--- your code printed ---\nflooding"), output
    assert {name: status for name, (status, _) in got.items()
            if name.startswith(("test_prints", "test_finds", "test_other", "test_keeps"))} == {
        "test_prints_a_secret": "passed", "test_finds_no_other_tests_output": "passed",
        "test_other_deliverable": "passed", "test_keeps_the_handler_its_import_set": "passed"}, got
    # A test's process that died, or timed out and was interrupted, costs no sandbox.
    assert result.environment["sandboxes"] == 1, result.environment
