"""A test past its time limit in wall-clock time: computing (the kernel's CPU limit ends it), kept waiting for a CPU
by a busy machine (it goes on), or waiting and sleeping (it times out). The rule, on the sandbox's numbers as a
runner reports them; the kernel's numbers behind them; and the judge on a real sandbox, idle and busy."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.busy import busy_cores
from tests.support.sandbox_support import children_get_cpu_cgroups
from worker.engine.grade import grade
from worker.engine.judge.overtime import IDLE_WINDOW, WALL_FACTOR, Overtime
from worker.engine.manifest import Limits, load_assignment
from worker.engine.result import GradeResult
from worker.engine.runners import make_runner
from worker.engine.runners.base import SandboxSpec, Usage
from worker.engine.runners.local import LocalRunner
from worker.sandbox import wire
from worker.sandbox.cpuuse import Priority, Waits


class Reports:
    """A sandbox as far as `Overtime` sees one: the usage its runner reports, one per look."""

    def __init__(self, *usages: Usage | None) -> None:
        self.usages = list(usages)

    def usage(self) -> Usage | None:
        return self.usages.pop(0)


class Clock:
    """Monotonic seconds as given: `start`, then each reading `step` later (or the times set with `at`)."""

    def __init__(self, start: float, step: float = 0.0) -> None:
        self.now, self.step = start - step, step

    def at(self, now: float) -> None:
        self.now, self.step = now, 0.0

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def looks(limit: float, *usages: Usage | None) -> tuple[list[str | None], bool]:
    """What `Overtime` says at each look, a window apart, at a sandbox that reports `usages`; and whether the
    wall clock still ends the test after them."""
    overtime, sandbox = Overtime(limit, clock=Clock(100.0, IDLE_WINDOW)), Reports(*usages)
    said = [overtime.look(sandbox) for _ in usages]  # type: ignore[arg-type]
    return said, not overtime.load_aware


def test_is_a_sandbox_that_neither_ran_nor_waited_for_a_cpu_idle_and_one_kept_waiting_not() -> None:
    """A window with almost no CPU is idle only if the sandbox did not wait for a CPU either, and has nothing
    runnable at the look; where the runner cannot tell waits, CPU alone decides and the wall clock stays."""
    assert looks(2, Usage(1.0, 5.0), Usage(1.01, 5.0)) == ([None, "idle"], False)
    assert looks(2, Usage(1.0, 5.0), Usage(1.01, 5.9)) == ([None, None], False)
    assert looks(2, Usage(1.0, 5.0), Usage(1.01, 5.0, running=True)) == ([None, None], False)
    assert looks(2, Usage(1.0), Usage(1.01)) == ([None, "idle"], True)
    assert looks(2, Usage(1.0), Usage(1.5)) == ([None, None], True)
    assert looks(2, Usage(1.0), None, Usage(1.0), Usage(1.0)) == ([None, None, None, "idle"], True)  # afresh
    assert looks(2, Usage(1.0, 5.0), None, None) == ([None, None, None], False)  # a look without an answer


def test_does_a_sandbox_that_goes_on_computing_past_its_limit_time_out_at_three_times_it() -> None:
    """Its processes together may use WALL_FACTOR times the limit after the first look past it, not more."""
    cap = WALL_FACTOR * 2
    assert looks(2, Usage(7.0, 0.0), Usage(7.0 + cap, 0.0)) == ([None, None], False)
    assert looks(2, Usage(7.0, 0.0), Usage(7.1 + cap, 0.0)) == ([None, "computing"], False)


def test_does_a_new_call_or_a_new_sandbox_start_the_looks_afresh() -> None:
    """Between calls the sandbox waits for the judge (not idling); a new sandbox's CPU is not the last one's."""
    clock = Clock(100.0)
    overtime = Overtime(2, clock=clock)
    first = Reports(Usage(1.0, 0.0), Usage(1.0, 0.0))
    assert overtime.look(first) is None  # type: ignore[arg-type]
    overtime.new_call(104.0)
    assert overtime.next_look() == 105.0  # a call answered within a window costs no look
    clock.at(105.0)
    assert overtime.look(first) is None  # type: ignore[arg-type]
    other = Reports(Usage(10.0, 0.0), Usage(10.5, 0.0))  # 9.5 s past the first sandbox's first look
    clock.at(106.0)
    assert overtime.look(other) is None  # type: ignore[arg-type]
    clock.at(107.0)
    assert overtime.look(other) is None  # type: ignore[arg-type]


def test_is_a_window_measured_from_when_the_last_answer_came_not_when_it_was_asked_for() -> None:
    """A look whose answer took 1.9 s (a busy zygote) is the time of its answer: the next look, due as soon as it
    came, waits a window after it rather than comparing two answers a moment apart."""
    clock = Clock(100.0)
    overtime = Overtime(2, clock=clock)
    sandbox = Reports(Usage(1.0, 0.0), Usage(1.0, 0.0))
    clock.at(101.9)  # asked at 100.0, answered at 101.9
    assert overtime.look(sandbox) is None  # type: ignore[arg-type]
    assert overtime.next_look() == 102.9


def _thread(directory: Path, delay_ns: int, state: str = "S", nice: int = 0, policy: int = 0) -> str:
    """A stand-in for a thread's /proc directory: its schedstat and stat as the kernel writes them."""
    directory.mkdir(exist_ok=True)
    (directory / "schedstat").write_text(f"123456 {delay_ns} 7\n")
    after = [state, "1", "42", "42", "0", "-1", "4194560", *["0"] * 8, "20", str(nice), "1", *["0"] * 17,
             "17", "0", "0", str(policy), "0", "0", *["0"] * 10]
    (directory / "stat").write_text(f"42 (a name) with) {' '.join(after)}\n")
    return str(directory)


def test_does_a_thread_that_ends_take_nothing_back_from_the_sandboxs_waits(tmp_path: Path) -> None:
    """Waits add up look by look: an ended thread's wait stays counted, a new thread's counts whole, and an id
    that now names another thread (a smaller delay) counts that thread's whole wait."""
    waits = Waits(Priority(nice=0, idle=False))
    a, b = _thread(tmp_path / "a", 1_000_000_000), _thread(tmp_path / "b", 2_000_000_000)
    assert waits.look([a, b]) == (pytest.approx(3.0), False)
    _thread(tmp_path / "a", 1_500_000_000, state="R")
    assert waits.look([a]) == (pytest.approx(3.5), True)
    c = _thread(tmp_path / "c", 200_000_000)
    _thread(tmp_path / "a", 100_000_000)
    assert waits.look([a, c]) == (pytest.approx(3.8), False)
    assert waits.look([str(tmp_path / "gone")]) == (None, False)  # a kernel without run-queue delays
    assert waits.looks == 4  # what the zygote numbers its answers by


def test_does_a_thread_that_lowered_its_own_priority_earn_nothing_by_waiting(tmp_path: Path) -> None:
    """A thread niced below its start, moved to SCHED_IDLE, or in a session whose autogroup it niced is kept
    waiting by its own choice: its waits add nothing and it does not count as runnable, while a thread beside
    it at its start's priority earns its waits as before."""
    start = Priority(nice=5, idle=False)
    plain = _thread(tmp_path / "plain", 1_000_000_000, state="R", nice=5)
    (tmp_path / "proc" / "7" / "task").mkdir(parents=True)
    (tmp_path / "proc" / "7" / "autogroup").write_text("/autogroup-9 nice 0\n")
    in_group = _thread(tmp_path / "proc" / "7" / "task" / "8", 1_000_000_000, nice=5)
    assert Waits(start).look([plain, in_group]) == (pytest.approx(2.0), True)
    for lowered in (dict(nice=6), dict(nice=5, policy=5)):
        waits = Waits(start)
        assert waits.look([_thread(tmp_path / "low", 4_000_000_000, state="R", **lowered), in_group]) == \
            (pytest.approx(1.0), False), lowered
    # A forked sandbox's filter refuses nice and policy changes: only its autogroup is compared.
    niced = _thread(tmp_path / "niced", 4_000_000_000, nice=19, policy=5)
    assert Waits(Priority()).look([niced, in_group]) == (pytest.approx(5.0), False)
    (tmp_path / "proc" / "7" / "autogroup").write_text("/autogroup-9 nice 19\n")
    assert Waits(start).look([plain, in_group]) == (pytest.approx(1.0), True)
    assert Waits(Priority()).look([plain, in_group]) == (pytest.approx(1.0), True)
    assert Waits(None).look([niced, in_group]) == (pytest.approx(5.0), False)  # a container's: not read


def test_does_a_real_threads_priority_read_as_lowered_once_it_lowers_it() -> None:
    """The kernel's own fields: a process that niced itself, or moved to SCHED_IDLE, reads as lowered; one
    that did neither does not."""
    lower = {"plain": "", "nice": "os.nice(3)", "idle": "os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))"}
    start = Priority.own()
    for name, call in lower.items():
        script = f"import os, sys, time\n{call}\nprint(flush=True)\ntime.sleep(30)"
        with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE) as child:
            assert child.stdout is not None and child.stdout.readline() == b"\n"
            directory = f"/proc/{child.pid}/task/{child.pid}"
            fields = Path(directory, "stat").read_text().rsplit(")", 1)[1].split()
            assert start.lowered(directory, fields) is (name != "plain"), name
            child.kill()


@pytest.fixture(scope="module")
def runner() -> Iterator[LocalRunner]:
    local = LocalRunner(sandbox="fork")
    if local.sandbox != "fork":
        pytest.skip("the local runner cannot fork sandboxes here")
    yield local
    local.close()


def test_does_the_zygote_answer_each_usage_ask_even_when_two_arrive_together(runner: LocalRunner) -> None:
    """A judge that asks again before the zygote answered (it was slow on a busy machine) gets both answers,
    told apart by their count, and its child lives on; the answer has the kernel's run-queue delays."""
    sandbox = runner.prepare(SandboxSpec(Limits()))
    try:
        sandbox.lease.sendall(b'{"op": "usage"}\n{"op": "usage"}\n')  # type: ignore[attr-defined]
        sandbox._usage_asked = 2  # type: ignore[attr-defined]
        usage = sandbox.usage()
        assert usage is not None and usage.cpu >= 0 and usage.waited is not None, usage
        assert sandbox._usage_asked == 3  # type: ignore[attr-defined]
        assert sandbox.exit_info().state == "running"
    finally:
        sandbox.stop()


def test_does_the_zygote_pass_the_judges_interrupt_on_and_end_the_child_only_for_anything_else(
        runner: LocalRunner) -> None:
    """The interrupt (asked with a usage in one read) reaches the child's init, which ignores it until a submission
    is imported (`testsignals.py`): the child answers on; a line that is neither still ends it."""
    sandbox = runner.prepare(SandboxSpec(Limits()))
    try:
        assert sandbox.interrupt()
        sandbox.lease.sendall(b'{"op": "interrupt"}\n{"op": "usage"}\n')  # type: ignore[attr-defined]
        sandbox._usage_asked += 1  # type: ignore[attr-defined]
        assert sandbox.usage() is not None
        sandbox.write(wire.encode_frame({"op": "ping", "id": "after"}))
        reader, frame = wire.FrameReader(), None
        while frame is None or frame.get("id") != "after":
            frame = reader.next_frame()
            if frame is None:
                reader.feed(sandbox.read(timeout=30))
        assert frame.get("value") == "pong" and sandbox.exit_info().state == "running"
        sandbox.lease.sendall(b'{"op": "interrupt", "pid": 1}\n')  # type: ignore[attr-defined]
        assert sandbox.exit_info(wait=10).state != "running"
    finally:
        sandbox.stop()


MANIFEST = """
id = "overtime"
title = "Overtime"
files = ["solution.py"]
[limits]
test_timeout = 2
run_timeout = 120
[[deliverables]]
id = "a"
title = "Part A"
points = 1
"""

TESTS = '''
import pytest
pytestmark = pytest.mark.deliverable("a")

def test_it(student):
    assert student.work() == 1
'''

CHAIN = '''
import os, time

def spin_then_pass_on():
    end = time.process_time() + 1.5  # under each process's own 2 s limit
    while time.process_time() < end:
        pass
    if os.fork() == 0:
        spin_then_pass_on()
    os._exit(0)

def work():
    if os.fork() == 0:
        spin_then_pass_on()
    time.sleep(3600)

def others_running():
    """The sandbox's processes on a CPU or waiting for one, but this one: none, once the test's leftovers went."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if stat.read().rsplit(")", 1)[1].split()[0] == "R":
                        found.append(int(entry))
            except OSError:
                pass  # gone meanwhile
    return found
'''

TESTS_AFTER = '''
def test_after(student):
    assert student.others_running() == []
'''

# A process of the test, in a session of its own, nices its session's autogroup (no filter refuses that) and
# spins: on a busy machine its autogroup gets a sliver of a CPU, and it is runnable, waiting for more.
LOWERED = '''
import ctypes, errno, os, time

def work():
    child = os.fork()
    if child == 0:
        os.setsid()
        ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: its /proc files are its own again
        while True:
            try:
                with open("/proc/self/autogroup", "w") as autogroup:
                    autogroup.write("19")
                break
            except OSError as exc:
                if exc.errno != errno.EAGAIN:  # the kernel takes one such write a tenth of a second
                    os._exit(exc.errno)
        while True:
            pass
    return os.waitpid(child, 0)[1]
'''

SLEEPER = '''
import time

def work():
    time.sleep(3600)
'''


def grade_work(tmp_path: Path, solution: str, after: str = "") -> GradeResult:
    (tmp_path / "assignment.toml").write_text(MANIFEST)
    (tmp_path / "test_it.py").write_text(TESTS + after)
    return grade(load_assignment(tmp_path), {"solution.py": textwrap.dedent(solution).encode()},
                 make_runner("local"))


def test_does_a_chain_of_processes_each_under_its_limit_time_out_once_they_computed_three_times_it(
        tmp_path: Path) -> None:
    """A test whose process sleeps while a chain of children computes, each passing on before its own CPU limit:
    the kernel ends none of them, so the judge ends the test once they have used three times its 2 s more together.
    Its sandbox serves the next test (the test's process was interrupted: `testsignals.py`), with nothing of the
    chain left computing beside it."""
    result = grade_work(tmp_path, CHAIN, TESTS_AFTER)
    test, after = result.deliverables[0].tests
    assert test.status == "timeout"
    assert "went on computing past the 2 s limit, for 6 s more of CPU time together in work()" in test.output
    assert after.status == "passed", after.output
    assert result.environment["sandboxes"] == 1, result.environment


def test_does_a_sleeping_function_on_a_busy_machine_still_time_out_as_not_computing(tmp_path: Path) -> None:
    """A sleeping sandbox waits for no CPU, however busy the machine (every core four times over): it is told
    from one kept waiting."""
    with busy_cores(4):
        test = grade_work(tmp_path, SLEEPER).deliverables[0].tests[0]
    assert test.status == "timeout"
    assert "no answer within 2 s, and it was not computing (waiting or sleeping) in work()" in test.output


@pytest.mark.skipif(not os.path.exists("/proc/self/autogroup"), reason="this kernel groups no sessions")
def test_does_a_sandbox_that_niced_its_autogroup_on_a_busy_machine_earn_nothing_by_it(tmp_path: Path) -> None:
    """A sandbox that lowered its own priority through its session's autogroup, then spins on a machine busy four
    times over, earns nothing by the waiting it chose. In the root CPU cgroup, where autogroups apply, it times out
    as not computing, not at the run's limit. In a CPU cgroup of its own (a local child where the host allows it),
    the nicing changes nothing: it keeps its share, spins to its CPU limit and the kernel ends it (SIGXCPU, 24)."""
    own_cpu_cgroup = children_get_cpu_cgroups()
    with busy_cores(4):
        test = grade_work(tmp_path, LOWERED).deliverables[0].tests[0]
    if own_cpu_cgroup:
        assert test.status == "failed" and "assert 24 == 1" in test.output, test.output
    else:
        assert test.status == "timeout", test.output
        assert "no answer within 2 s, and it was not computing (waiting or sleeping) in work()" in test.output
