"""What a sandbox's processes have had of the CPUs, read from the kernel's /proc: the CPU seconds they used, the
seconds they spent runnable but waiting for a CPU (the scheduler's run-queue delay: what a busy machine withheld
from them), and whether one of them is running or runnable now.

The judge looks at these once a test is past its time limit in wall-clock time, to tell a test that is still
computing on a busy machine (the kernel's CPU-time limit will end it) from one that waits or sleeps (it times out
then), whatever the machine's load. Runs in the sandbox zygote, and in the Docker runner for a fresh container's
threads; standard library only. Reads only numbers the kernel writes, never anything a child wrote.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

TICK = os.sysconf("SC_CLK_TCK")


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
                with open(f"/proc/{current}/task/{task}/children") as children:
                    stack += [int(c) for c in children.read().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total / TICK, threads


def thread_dirs(tids: Iterable[int]) -> list[str]:
    """The /proc directories of threads known by id (0, a thread outside our pid namespace, is left out)."""
    return [f"/proc/{tid}" for tid in tids if tid > 0]


class Waits:
    """Seconds a changing set of threads has waited for a CPU, summed look by look: a thread's wait counts up to
    the last look that saw it, so a thread that ends takes nothing back from the total (a plain sum over the
    living threads would shrink then, and read as a sandbox that stopped computing)."""

    def __init__(self) -> None:
        self.total = 0.0
        self.looks = 0  # so far: the zygote numbers its answers by it
        self._seen: dict[str, int] = {}

    def look(self, threads: list[str]) -> tuple[float | None, bool]:
        """(the total so far, None where this kernel keeps no run-queue delays; whether a thread is running or
        runnable now)."""
        self.looks += 1
        delays: dict[str, int] = {}
        running = False
        for directory in threads:
            try:
                with open(f"{directory}/schedstat") as schedstat:
                    delays[directory] = int(schedstat.read().split()[1])
                with open(f"{directory}/stat") as stat:
                    running = running or stat.read().rsplit(")", 1)[1].split()[0] == "R"
            except (OSError, ValueError, IndexError):
                continue
        if threads and not delays:
            return None, running
        for directory, delay in delays.items():
            before = self._seen.get(directory, 0)
            # A smaller delay than last time: the id now names another thread, whose whole wait is new.
            self.total += (delay - before if delay >= before else delay) / 1e9
        self._seen = delays
        return self.total, running
