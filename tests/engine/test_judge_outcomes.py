"""How a message says that the student's process ended (`worker.engine.judge.outcomes`): does it name the signal, and
what the signals that native code dies of mean, however the runner reported the end?"""

from __future__ import annotations

import pytest

from worker.engine.judge import outcomes  # (not its test_process_ended by name: pytest would collect it)
from worker.engine.manifest import Limits
from worker.engine.runners.base import ExitInfo

SEGFAULT = "signal 11, SIGSEGV: a segmentation fault in native code"


@pytest.mark.parametrize(("info", "said"), [
    (ExitInfo("exited", 3), "ended unexpectedly (exit code 3) in f()"),
    (ExitInfo("exited", 0), "ended unexpectedly (exit code 0) in f()"),
    # A container's or a namespace's init reports 128 + n for a process that signal n ended...
    (ExitInfo("exited", 139), f"ended unexpectedly (exit code 139, from {SEGFAULT}) in f()"),
    (ExitInfo("exited", 134), "(exit code 134, from signal 6, SIGABRT: aborted by native code)"),
    # ... a runner that waited for the process itself, -n.
    (ExitInfo("exited", -11), f"ended unexpectedly ({SEGFAULT}) in f()"),
    # Past the signals, or a number that names none: the code alone.
    (ExitInfo("exited", 250), "ended unexpectedly (exit code 250) in f()"),
    (ExitInfo("exited", 128 + 40), "ended unexpectedly (exit code 168) in f()"),
    (None, "the student process ended unexpectedly in f()"),
])
def test_does_a_sandboxs_end_name_its_signal(info: ExitInfo | None, said: str) -> None:
    """Does the message of a sandbox that ended say its exit code, and, for one that a signal ended (reported
    either way), which signal and what it means?"""
    ended = outcomes.sandbox_ended(info, "", Limits(), "in f()")
    assert isinstance(ended, outcomes.SandboxLimit) and ended.status == "crashed"
    assert said in str(ended), str(ended)


@pytest.mark.parametrize(("how", "said"), [
    ({"code": 3}, "(exit code 3)"),
    ({"signal": 11}, f"({SEGFAULT})"),
    ({"signal": 8}, "(signal 8, SIGFPE: an arithmetic error in native code)"),
    ({"signal": 15}, "(signal 15, SIGTERM)"),
    ({"signal": 99}, "(signal 99)"),
    ({"signal": "11"}, "ended unexpectedly in f()"),  # the report comes from the sandbox: no number, no claim
])
def test_does_a_test_process_end_name_its_signal(how: dict[str, object], said: str) -> None:
    """And for a test's process, as its post-import process reports the end?"""
    ended = outcomes.test_process_ended(how, Limits(), "in f()")
    assert ended.status == "crashed" and said in str(ended), str(ended)


@pytest.mark.parametrize(("oom_killed", "status", "said"), [
    (True, "memory", "was killed in f() for going over the memory limit (1024 MB)"),
    (False, "crashed", "was killed (signal 9, SIGKILL) in f(), not for going over the memory limit: by something"),
    (None, "memory", "was killed in f(), most likely for going over the memory limit (1024 MB)"),
])
def test_does_a_killed_test_process_say_whether_the_memory_limit_killed_it(oom_killed: bool | None, status: str,
                                                                           said: str) -> None:
    """A test's process that SIGKILL ended: does its message say the memory limit ended it where its sandbox's
    memory cgroup counted an OOM kill, that its own code did where none was counted, and only "most likely" the
    memory limit where the runner cannot tell? And a SIGKILL past the CPU limit is still a timeout?"""
    ended = outcomes.test_process_ended({"signal": 9, "cpu": 0.5}, Limits(memory_mb=1024), "in f()", oom_killed)
    assert ended.status == status and said in str(ended), str(ended)
    late = outcomes.test_process_ended({"signal": 9, "cpu": 99.0}, Limits(), "in f()", oom_killed)
    assert late.status == "timeout", str(late)
