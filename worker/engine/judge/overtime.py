"""A test past its time limit in wall-clock time: is its sandbox still computing, or waiting or sleeping?

A test's limit is CPU time, which the kernel counts for the student's process alone (RLIMIT_CPU), so a busy worker
cannot make a correct solution time out. The wall clock only says when to start looking: past the limit, the
judge looks at what the sandbox has had of the CPUs every IDLE_WINDOW seconds (`Sandbox.usage`). A sandbox that
in a window neither ran nor waited for a CPU (IDLE_CPU of the window at most) and has nothing runnable is waiting
or sleeping: the test times out then. One that is computing, or runnable and kept waiting by a busy machine, goes
on until the kernel's CPU limit ends it, or until its processes together have used WALL_FACTOR times the limit
more (a chain of processes, each under its own limit, must end too).

Only where the runner cannot tell how long the sandbox waited for a CPU does the wall clock end a test, at
WALL_FACTOR times the limit (a backstop that a machine busy enough can reach first); the run's own limit ends
every test either way.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from worker.engine.runners.base import Sandbox, Usage

WALL_FACTOR = 3.0
IDLE_WINDOW = 1.0
IDLE_CPU = 0.05


class Overtime:
    """The judge's looks at one test's sandbox past the test's limit; `look` says when the test has timed out."""

    def __init__(self, limit: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.clock = clock
        self.new_test()

    def new_test(self) -> None:
        """Forget the last test's looks."""
        self.sandbox: Sandbox | None = None
        self.first_cpu: float | None = None  # at the first look at this sandbox that had an answer
        self.load_aware = False  # a look told waiting for a CPU from idling: the wall clock ends nothing
        self.new_call(float("-inf"))

    def new_call(self, now: float) -> None:
        """A call starts `now`: its first look is a window later at the earliest (a call answered sooner costs
        none), and compares with nothing before it (between calls the sandbox waits for the judge)."""
        self.last: Usage | None = None
        self.at = now

    def next_look(self) -> float:
        """When the next look is due (monotonic seconds)."""
        return self.at + IDLE_WINDOW

    def look(self, sandbox: Sandbox) -> str | None:
        """Look at `sandbox` now: "idle" (it did not compute over the last window), "computing" (its processes
        went on for WALL_FACTOR times the limit), or None (wait on)."""
        usage = sandbox.usage()
        # The look's time is its answer's: an answer slow to come (a busy zygote) must not shorten the window
        # the next one is measured over, or a computing sandbox would look idle over a sliver of time.
        now = self.clock()
        last, at, self.at = self.last, self.at, now
        if sandbox is not self.sandbox:  # the first look at this sandbox in this test
            self.sandbox, self.first_cpu, last = sandbox, None, None
        if usage is None:  # the runner cannot tell (or did not answer in time): the next look starts afresh
            self.last = None
            return None
        self.last = usage
        self.load_aware = self.load_aware or usage.waited is not None
        if self.first_cpu is None:
            self.first_cpu = usage.cpu
        if usage.cpu - self.first_cpu > WALL_FACTOR * self.limit:
            return "computing"
        if last is None or usage.running:
            return None
        busy = usage.cpu - last.cpu
        if usage.waited is not None and last.waited is not None:
            busy += usage.waited - last.waited
        return "idle" if busy < IDLE_CPU * (now - at) / IDLE_WINDOW else None
