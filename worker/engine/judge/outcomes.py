"""What a call into the student's code can end in: the exceptions a reference test sees, and the plain
messages they carry (what the student reads)."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from worker.engine.errors import InfrastructureError
from worker.engine.judge.overtime import WALL_FACTOR

if TYPE_CHECKING:
    from worker.engine.manifest import Limits
    from worker.engine.runners.base import ExitInfo

SIGXCPU, SIGKILL = int(signal.SIGXCPU), int(signal.SIGKILL)
# What the signals that native code dies of mean, for a student who has never met them (any other: its name).
SIGNAL_MEANINGS = {
    int(signal.SIGSEGV): "a segmentation fault in native code",
    int(signal.SIGBUS): "a bus error in native code",
    int(signal.SIGABRT): "aborted by native code",
    int(signal.SIGFPE): "an arithmetic error in native code",
    int(signal.SIGILL): "an illegal instruction in native code",
}


class StudentError(AssertionError):
    """The student's code raised, or could not be imported; the test fails with this message."""

    def __init__(self, message: str, kind: str = "exception", error: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.error = error or {}


class SandboxLimit(Exception):
    """The student process hit a limit (timeout, memory) or crashed; `status` is the test's status."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


class NotStarted(SandboxLimit):
    """A test's process ended before it answered the request that was to start it: nothing of the test ran."""


@dataclass
class LoadFailure:
    """The submission could not be imported; every call fails with this message, shown with what the import printed
    (`printed`: from its reply, or, where it ended the sandbox, that sandbox's last output)."""

    message: str
    printed: str = ""

    def text(self) -> str:
        """The message and what the import printed, as the result's summary shows them (`grade.py` caps it)."""
        return with_printed(self.message, self.printed)


def with_printed(message: str, printed: str, limit: int | None = None) -> str:
    """A message, and below it what the student's code printed (up to `limit` characters), if anything."""
    printed = printed.strip()
    return f"{message}\n--- your code printed ---\n{printed[:limit]}" if printed else message


def location(during: str | None) -> str:
    """Where in the run something happened, as the student reads it."""
    if during == "import":
        return "while importing the submission"
    return f"in {during}()" if during else "while starting"


def load_message(error: dict[str, Any], module: str) -> str:
    """Why the submission could not be imported."""
    kind = error.get("kind")
    message = str(error.get("message", ""))
    if kind == "syntax":
        return f"{module}.py does not compile: {message}"
    if kind == "exit":
        return f"{module}.py {message}"
    where = f" (line {error['line']})" if isinstance(error.get("line"), int) else ""
    text = f"{module}.py raised {error.get('type', 'an exception')} while being imported{where}: {message}"
    if error.get("traceback"):
        text += "\n" + str(error["traceback"])
    return text


def call_error(fn: str, error: dict[str, Any]) -> BaseException:
    """The exception a failed call raises in the test."""
    kind = str(error.get("kind", "exception"))
    message = str(error.get("message", ""))
    if kind == "not_implemented":
        return StudentError(f"{fn}() is not implemented yet (it raises NotImplementedError)", kind, error)
    if kind == "missing":
        return StudentError(message, kind, error)
    if kind == "memory":
        return SandboxLimit("memory", f"ran out of memory in {fn}()")
    if kind == "exit":
        return StudentError(message, kind, error)
    if kind == "protocol":
        return StudentError(message, kind, error)
    if kind == "device":  # the sandbox cannot use the GPU the test's tensors are on: ours, retried elsewhere
        return InfrastructureError(f"{fn}(): {message}")
    where = f" at line {error['line']}" if isinstance(error.get("line"), int) else ""
    text = f"{fn}() raised {error.get('type', 'an exception')}{where}: {message}"
    if error.get("traceback"):
        text += "\n" + str(error["traceback"])
    return StudentError(text, kind, error)


def cpu_timeout(limits: Limits, where: str) -> SandboxLimit:
    """The kernel stopped the student's process at its CPU-time limit."""
    return SandboxLimit("timeout", f"timed out: used more than {limits.test_timeout:g} s of CPU time {where}")


def timeout(limits: Limits, where: str, why: str | None, run_over: bool) -> SandboxLimit:
    """A call timed out: `why` its sandbox's overtime said so ("idle", "computing"); else the run's limit (where
    `run_over`) or the wall-clock backstop (`WALL_FACTOR` times the test's limit) ended it."""
    limit = f"{limits.test_timeout:g} s"
    times = f"{limits.test_timeout * WALL_FACTOR:g} s"  # the cap past the limit, or the backstop
    if why == "idle":
        return SandboxLimit("timeout", f"timed out: no answer within {limit}, and it was not computing "
                                       f"(waiting or sleeping) {where}")
    if why == "computing":
        return SandboxLimit("timeout", f"timed out: its processes went on computing past the {limit} limit, "
                                       f"for {times} more of CPU time together {where}")
    if run_over:
        return SandboxLimit("timeout", f"the whole run went over its {limits.run_timeout:g} s limit {where}")
    return SandboxLimit("timeout", f"timed out: no answer within {times} (wall clock) {where}")


def run_over(limits: Limits, fn: str) -> SandboxLimit:
    """A test called the student's code after an earlier test had taken the run past its limit: the call is not
    made (nor a sandbox started for it)."""
    return SandboxLimit("timeout", f"not run: the whole run had gone over its {limits.run_timeout:g} s limit "
                                   f"before this test called {fn}()")


def test_process_ended(how: Any, limits: Limits, where: str, oom_killed: bool | None = None) -> SandboxLimit:
    """A test's process ended during a call; `how`, as its post-import process reported it: its exit code or
    signal and the CPU time it used. `oom_killed`: whether the kernel's OOM killer killed a process of the sandbox
    since the last report, by its memory cgroup's count (None where the runner cannot tell)."""
    how = how if isinstance(how, dict) else {}
    cpu = how.get("cpu") if isinstance(how.get("cpu"), (int, float)) else 0.0
    signum = how.get("signal")
    if signum == SIGXCPU or (signum == SIGKILL and cpu >= limits.test_timeout):
        return cpu_timeout(limits, where)
    if signum == SIGKILL and oom_killed is None:
        return SandboxLimit("memory", f"was killed {where}, most likely for going over the memory limit "
                                      f"({limits.memory_mb} MB)")
    if signum == SIGKILL and oom_killed:
        return SandboxLimit("memory", f"was killed {where} for going over the memory limit ({limits.memory_mb} MB)")
    if signum == SIGKILL:  # nothing of ours sends it during a call: the submission's own code did
        return SandboxLimit("crashed", f"the student process was killed{ended_how(signum=SIGKILL)} {where}, not "
                                       "for going over the memory limit: by something the submission did itself "
                                       "(a signal it sent, or a process it started)")
    code = how.get("code") if isinstance(how.get("code"), int) else None
    return SandboxLimit("crashed", f"the student process ended unexpectedly"
                                   f"{ended_how(code, signum if isinstance(signum, int) else None)} {where}")


def sandbox_ended(info: ExitInfo | None, tail: str, limits: Limits, where: str) -> SandboxLimit:
    """The whole sandbox ended during a call; `info`, how (as its runner tells), `tail` the end of its output.
    Raises InfrastructureError where it was lost: ours, not the student's, so the worker runs the grading again."""
    if info is not None and info.state == "lost":
        raise InfrastructureError(f"the sandbox was lost {where}: {info.detail}")
    if info is not None and info.state == "oom":
        return SandboxLimit("memory", f"ran out of memory (limit {limits.memory_mb} MB) {where}")
    if info is not None and info.code in (128 + SIGXCPU, -SIGXCPU):
        return cpu_timeout(limits, where)
    code = info.code if info is not None else None
    # (A negative code: a runner that waited for the process itself says it was killed by signal -code.)
    how = ended_how(signum=-code) if code is not None and code < 0 else ended_how(code)
    message = f"the student process ended unexpectedly{how} {where}"
    return SandboxLimit("crashed", f"{message}; its last output:\n{tail}" if tail else message)


def ended_how(code: int | None = None, signum: int | None = None) -> str:
    """How a process ended, as a message's parenthesis: " (exit code 3)", " (signal 11, SIGSEGV: a segmentation
    fault in native code)", "" when neither is known. An exit code of 128 + n, which a container's or a namespace's
    init reports for a process that signal n killed, names that signal too."""
    if signum is not None:
        return f" (signal {signum}{_signal_text(signum)})"
    if code is None:
        return ""
    if 128 < code < 128 + 32 and _signal_text(code - 128):
        return f" (exit code {code}, from signal {code - 128}{_signal_text(code - 128)})"
    return f" (exit code {code})"


def _signal_text(signum: int) -> str:
    """", SIGSEGV: a segmentation fault in native code", ", SIGKILL", or "" for a number that names no signal."""
    try:
        name = signal.Signals(signum).name
    except ValueError:
        return ""
    meaning = SIGNAL_MEANINGS.get(signum)
    return f", {name}: {meaning}" if meaning else f", {name}"
