"""The runner interface: a runner prepares sandboxes; a sandbox is one isolated student server process.

Split in two steps so a warm pool can slot in: `prepare()` starts a sandbox whose server has imported torch and
is waiting, and the judge then loads one submission into it and calls the student's functions through it.
A sandbox serves exactly one submission and is always stopped afterwards.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from worker.engine.manifest import Limits

SANDBOX_SOURCE = Path(__file__).resolve().parents[2] / "sandbox"
# Files copied into every sandbox; nothing else of ours enters it.
SANDBOX_FILES = ("wire.py", "student_server.py", "values.py", "jail.py", "seccomp_filter.py", "seccomp_table.json",
                 "zygote.py", "forkready.py", "testprocs.py", "leftovers.py", "globalstate.py", "cpuuse.py",
                 "calloutput.py", "testsignals.py")


@dataclass(frozen=True)
class SandboxSpec:
    """What one sandbox needs: the assignment's limits and whether it gets the GPUs; for a zygote, how many
    gradings (worker slots) it serves at once, which sizes its container and the children it keeps ahead."""

    limits: Limits
    gpu: bool = False
    slots: int = 1


@dataclass
class ExitInfo:
    """How a sandbox's student process ended (or that it still runs)."""

    # "lost": its zygote or container went away, was ended through the engine, or the engine cannot say how it
    # ended; never the student's doing, so the grading fails as ours and runs again.
    state: str  # "running" | "exited" | "oom" | "killed" | "lost"
    code: int | None = None
    detail: str = ""


@dataclass(frozen=True)
class Usage:
    """What a sandbox's processes have had of the CPUs so far (`worker/sandbox/cpuuse.py`): CPU seconds; seconds
    they were runnable but waited for a CPU (None where the runner cannot tell); whether one of them is running
    or runnable now."""

    cpu: float
    waited: float | None = None
    running: bool = False


class SandboxTimeout(TimeoutError):
    """No bytes arrived before the deadline."""


class Sandbox(ABC):
    """One running student server, talking frames on its stdin/stdout."""

    def adopt(self) -> None:  # noqa: B027  (optional hook)
        """Make the sandbox usable from this process (start reader threads, connect); idempotent.

        A pool may start a sandbox in one process and hand it to a forked child: threads do not survive a fork,
        so whatever needs them starts here, in the process that talks to the sandbox.
        """

    def release(self) -> None:  # noqa: B027  (optional hook)
        """Forget the sandbox in this process after handing it to another one, without stopping it."""

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Send raw bytes to the student server's stdin (raise BrokenPipeError/OSError if it is gone)."""

    @abstractmethod
    def read(self, timeout: float) -> bytes:
        """Some bytes from the server's protocol stream; b"" at end of stream; SandboxTimeout if none came."""

    @abstractmethod
    def exit_info(self, wait: float = 0.0) -> ExitInfo:
        """How the student process ended, waiting up to `wait` seconds for it to end."""

    def usage(self) -> Usage | None:
        """What the sandbox's processes have had of the CPUs, where the runner can tell (None: it cannot)."""
        return None

    def oom_kills(self) -> int | None:
        """How many of the sandbox's processes the kernel's OOM killer has killed so far, from its memory cgroup
        (`child_cgroup.oom_kills`); None where the runner cannot tell (no cgroup of its own, or none readable)."""
        return None

    def interrupt(self) -> bool:
        """Send the sandbox's post-import process the judge's interrupt (SIGUSR1), which ends the test's process
        that timed out and has its end reported with what its call printed (`worker/sandbox/testsignals.py`).
        Whether it was sent (False: this runner cannot, or the sandbox is gone)."""
        return False

    @abstractmethod
    def stderr_tail(self) -> str:
        """The last few KiB the student process wrote to stderr (capped)."""

    @abstractmethod
    def stop(self) -> None:
        """Kill everything in the sandbox and release it; safe to call twice."""

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Runner(ABC):
    """A way to start sandboxes (docker, local, ...)."""

    name: ClassVar[str]
    production: ClassVar[bool] = False
    sandbox: str = "fresh"  # "fork": sandboxes are children of a sandbox zygote (see runners/forked.py)

    @abstractmethod
    def prepare(self, spec: SandboxSpec) -> Sandbox:
        """Start a fresh sandbox; raise InfrastructureError when that is impossible."""

    def warm(self, spec: SandboxSpec) -> Sandbox | None:
        """Get a sandbox like `spec` going ahead of its first use: started now (fresh sandboxes), or None
        where the runner only starts what makes the next `prepare()` fast (a sandbox zygote)."""
        return self.prepare(spec)

    def prepare_pooled(self, spec: SandboxSpec) -> Sandbox:
        """Start a sandbox to be handed to another process later (see `Sandbox.adopt`)."""
        return self.prepare(spec)

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Facts recorded with each grading run (runner name, image, ...)."""

    def gpu_capable(self) -> bool:
        """Whether sandboxes from this runner can be given GPUs (the judge still checks one is present)."""
        return False

    def options(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this runner in another process (see `make_runner`)."""
        return {}

    def close(self) -> None:  # noqa: B027  (optional hook: most runners hold nothing)
        """Release pooled resources."""


class CappedBuffer:
    """Keeps the last `limit` bytes written to it and counts what was dropped."""

    def __init__(self, limit: int = 8192) -> None:
        self.limit = limit
        self.data = bytearray()
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        """Append, dropping the oldest bytes beyond the limit."""
        self.data += chunk
        if len(self.data) > self.limit:
            extra = len(self.data) - self.limit
            del self.data[:extra]
            self.dropped += extra

    def text(self) -> str:
        """Decoded contents, noting how much was dropped."""
        body = self.data.decode("utf-8", "replace")
        return f"[{self.dropped} earlier bytes dropped]\n{body}" if self.dropped else body


def deadline_left(deadline: float) -> float:
    """Seconds until `deadline` (time.monotonic based), never negative."""
    return max(0.0, deadline - time.monotonic())
