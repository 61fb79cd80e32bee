"""The run's limit counts the run's own time, not the time a busy machine kept it waiting for a CPU.

A test's limit is CPU time (`overtime.py`), which load cannot take from it. The run's limit (`run_timeout`) is
wall-clock time, and a busy worker stretches a run's wall-clock time: a correct solution whose run keeps well inside
the limit on an idle worker would go over it on a busy one, and every test after that moment would fail. So when a
run reaches its deadline, the deadline first moves on by the time in which the kernel saw runnable tasks kept
waiting for a CPU since the run began (its CPU pressure figures, `/proc/pressure/cpu`, "some"), up to WALL_FACTOR
times the limit in all.

The measure is generous: any task's wait counts, not only the run's own. And it is bounded: a submission that keeps
the machine busy itself (each of its processes under its CPU limit, all of them under the sandbox's CPUs) can
stretch its run to WALL_FACTOR times the limit at most, as a test's own backstop allows. On an idle machine nothing
moves, and a run that sleeps past its limit ends there. Where the kernel keeps no pressure figures (before Linux
4.20, or booted with psi=0), the wall clock alone ends the run, as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from worker.engine.judge.overtime import WALL_FACTOR

PRESSURE = "/proc/pressure/cpu"
MIN_STEP = 0.05  # seconds: a smaller move ends the run instead (the machine was as good as idle meanwhile)


def stalled_seconds(path: str = PRESSURE) -> float | None:
    """The kernel's running total of time in which some runnable task waited for a CPU, in seconds; None where it
    keeps none."""
    try:
        with open(path) as pressure:
            for line in pressure:
                if line.startswith("some "):
                    return int(line.rsplit("total=", 1)[1]) / 1e6
    except (OSError, ValueError, IndexError):
        return None
    return None


class RunClock:
    """One run's deadline: none until `start`; moved on by the seconds that were ours (`give_back`), and at the
    deadline by what a busy machine withheld meanwhile (`over`). The launcher's backstop moves by both (`report`)."""

    def __init__(self, read: Callable[[], float | None] = stalled_seconds,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.read, self.clock = read, clock
        self.deadline = float("inf")
        self.given = 0.0  # seconds that were ours: sandbox starts, imports again
        self.moved = 0.0  # seconds a busy machine withheld, as the deadline moved on for them
        self.cap = 0.0
        self.start_stalled: float | None = None
        self.report: Callable[[float], None] = lambda seconds: None  # to the launcher (backstop.py)

    def start(self, limit: float) -> None:
        """The run begins now, with `limit` seconds of its own time."""
        self.deadline = self.clock() + limit
        self.cap = (WALL_FACTOR - 1) * limit  # the most the deadline moves on for the machine, in all
        self.start_stalled = self.read()

    def give_back(self, seconds: float) -> None:
        """`seconds` were ours (a sandbox's start), not the run's."""
        self.deadline += seconds
        self.given += seconds
        self.report(self.given + self.moved)

    def past(self) -> bool:
        """Whether the deadline, as it stands, has come (`over` may move it on first)."""
        return self.clock() >= self.deadline

    def over(self) -> bool:
        """Whether the run is past its limit. At the deadline, the deadline first moves on by the stall time since
        the run began, less what it moved on by already, within the cap; by less than MIN_STEP it does not move,
        and the run is over."""
        if not self.past():
            return False
        if self.start_stalled is None or (now := self.read()) is None:
            return True
        step = min(now - self.start_stalled, self.cap) - self.moved
        if step < MIN_STEP:
            return True
        self.moved += step
        self.deadline += step
        self.report(self.given + self.moved)
        return self.past()
