"""What a sandbox's processes have had of the CPUs, read from the kernel's /proc: the CPU seconds they used, the
seconds they spent runnable but waiting for a CPU (the scheduler's run-queue delay: what a busy machine withheld
from them), and whether one of them is running or runnable now.

The judge looks at these once a test is past its time limit in wall-clock time, to tell a test that is still
computing on a busy machine (the kernel's CPU-time limit will end it) from one that waits or sleeps (it times out
then), whatever the machine's load. Runs in the sandbox zygote, and in the Docker runner for a fresh container's
threads; standard library only. Reads only numbers the kernel writes, never anything a child wrote.

A thread that lowered its own priority is kept waiting by any load at all, by its own choice: its waits earn
nothing, and it does not count as runnable. A forked sandbox's seccomp filter refuses the calls that would lower
its nice or policy (`seccomp_filter.REFUSED`); what no filter refuses is a write to its session's autogroup
(`/proc/<pid>/autogroup`: without privilege an autogroup's priority can be lowered, not raised), and each sandbox
has a session of its own, whose autogroup starts at nice 0. The local runner's fresh sandboxes load the same
filter before their server says ready; their threads' nice and policy are compared with the runner's besides.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

TICK = os.sysconf("SC_CLK_TCK")
SCHED_IDLE = 5
NICE, POLICY = 16, 38  # indexes of fields 19 and 41 of /proc/<tid>/stat, counted after the command's ")"


@dataclass(frozen=True)
class Priority:
    """The scheduling priority a sandbox's threads start with, which a process without privilege can only lower:
    a nice and whether it is SCHED_IDLE (None: not compared, a filter refuses changing them), and the nice of
    its session's autogroup (0: each sandbox has a session of its own)."""

    nice: int | None = None
    idle: bool | None = None

    @classmethod
    def own(cls) -> Priority:
        """This process's nice and policy: what a process it starts has, in a session of its own."""
        return cls(os.getpriority(os.PRIO_PROCESS, 0), os.sched_getscheduler(0) == SCHED_IDLE)

    def lowered(self, directory: str, fields: list[str]) -> bool:
        """Whether the thread at `directory` (its stat's `fields`) runs at a lower priority than this."""
        if self.nice is not None and int(fields[NICE]) > self.nice:
            return True
        if self.idle is False and int(fields[POLICY]) == SCHED_IDLE:
            return True
        group = _autogroup(directory.split("/task/", 1)[0])  # a process's file: a thread directory has none
        return group is not None and group > 0


def _autogroup(process: str) -> int | None:
    """The nice of the autogroup of the process at /proc directory `process` ("/autogroup-85 nice 0"), None
    where the kernel keeps none."""
    try:
        with open(f"{process}/autogroup") as autogroup:
            return int(autogroup.read().split()[-1])
    except (OSError, ValueError, IndexError):
        return None


def tree(pid: int) -> tuple[float, list[str]]:
    """CPU seconds used by `pid` and everything below it (those of reaped children included), and the /proc
    directories of all their threads."""
    total, stack, seen, threads = 0, [pid], set(), []
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            with open(f"/proc/{current}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += sum(int(f) for f in fields[11:15])  # utime, stime, and those of reaped children
            for task in os.listdir(f"/proc/{current}/task"):
                threads.append(f"/proc/{current}/task/{task}")
                stack += task_children(f"/proc/{current}/task/{task}")
        except (OSError, ValueError, IndexError):
            continue
    return total / TICK, threads


def task_children(task_dir: str) -> list[int]:
    """The pids of the children that the thread at `task_dir` (/proc/PID/task/TID) forked and that still exist."""
    with open(f"{task_dir}/children") as children:
        return [int(c) for c in children.read().split()]


def thread_dirs(tids: Iterable[int]) -> list[str]:
    """The /proc directories of threads known by id (0, a thread outside our pid namespace, is left out)."""
    return [f"/proc/{tid}" for tid in tids if tid > 0]


class Waits:
    """Seconds a changing set of threads has waited for a CPU, summed look by look: a thread's wait counts up to
    the last look that saw it, so a thread that ends takes nothing back from the total (a plain sum over the
    living threads would shrink then, and read as a sandbox that stopped computing)."""

    def __init__(self, start: Priority | None) -> None:
        """`start`: the priority the sandbox's threads started with; a thread below it earns nothing. None
        where priorities cannot matter: a fresh Docker container's CPU cgroup gets its share whatever its
        threads' priority (and its seccomp profile refuses the calls that change one)."""
        self.start = start
        self.total = 0.0
        self.looks = 0  # so far: the zygote numbers its answers by it
        self._seen: dict[str, int] = {}

    def look(self, threads: list[str]) -> tuple[float | None, bool]:
        """(the total so far, None where this kernel keeps no run-queue delays; whether a thread is running or
        runnable now)."""
        self.looks += 1
        delays: dict[str, int] = {}
        lowered: set[str] = set()
        running = False
        for directory in threads:
            try:
                with open(f"{directory}/schedstat") as schedstat:
                    delays[directory] = int(schedstat.read().split()[1])
                with open(f"{directory}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
                if self.start is not None and self.start.lowered(directory, fields):
                    lowered.add(directory)
                else:
                    running = running or fields[0] == "R"
            except (OSError, ValueError, IndexError):
                continue
        if threads and not delays:
            return None, running
        for directory, delay in delays.items():
            if directory in lowered:
                continue
            before = self._seen.get(directory, 0)
            # A smaller delay than last time: the id now names another thread, whose whole wait is new.
            self.total += (delay - before if delay >= before else delay) / 1e9
        self._seen = delays
        return self.total, running
