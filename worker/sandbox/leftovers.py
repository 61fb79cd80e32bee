"""What a sandbox's tests leave in its pid namespace, ended: the sweep that kills everything but the processes it
is told to spare, and the reaping of what died. Runs inside the sandbox as the post-import process (the
namespace's init, or its stand-in); standard library only.

Kept apart from `testprocs` (which forks, starts, keeps, parks and ends each test's process) because every one of
those paths ends in the same sweep, and the sweep's rules are the isolation's: only in a pid namespace of the
sandbox's own, everything stopped at once before anything is killed, nothing outside the namespace reachable.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

# The running test's pid, once a sweep (`reap`) collected it before the post-import process asked: how it ended.
swept: dict[int, tuple[int, Any] | None] = {}


def own_pid_namespace() -> bool:
    """Does this process have a pid namespace to itself (it is its init, or the sandbox's runner says so)?"""
    return os.getpid() == 1 or os.environ.get("GRADER_OWN_PID_NAMESPACE") == "1"


def can_fork_ahead() -> bool:
    """Fork the next test's process while a test runs? Only where /proc lists exactly this pid namespace (so a
    scan of it can reach nothing outside) and the kernel has pidfd_open (to see the test's process die)."""
    if not own_pid_namespace() or not hasattr(os, "pidfd_open"):
        return False
    try:
        if os.readlink("/proc/self") != str(os.getpid()):
            return False  # a /proc of another pid namespace: its pids are not ours
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True


def end_leftovers(keep: tuple[int, ...] | None = None) -> None:
    """Kill whatever test processes left behind (daemons, forks, the test's process itself) but those in `keep`,
    and reap what has died.

    Only in a pid namespace of the sandbox's own: kill(-1) there reaches exactly the sandbox's processes, never
    anything on the host. With `keep`, everything is stopped first in one kill(-1) (a process that is forking
    either has its child stopped too or its fork fails), then each pid that /proc shows is killed but ours,
    init's and `keep`'s, and those in `keep` are let go on. The caller checked that /proc is this namespace's.
    """
    if own_pid_namespace():
        if keep is None:
            _signal(-1, signal.SIGKILL)
        else:
            spared = {1, os.getpid(), *keep}
            if all(int(entry) in spared for entry in os.listdir("/proc") if entry.isdigit()):
                # Nothing but those: the processes kept are each blocked on a pipe (a kept test's process once
                # it said so, the next one until started), so none can fork meanwhile. Nothing to stop.
                reap()
                return
            _signal(-1, signal.SIGSTOP)
            for entry in os.listdir("/proc"):
                if entry.isdigit() and int(entry) not in spared:
                    _signal(int(entry), signal.SIGKILL)
            for pid in keep:
                _signal(pid, signal.SIGCONT)
    reap()


def wait_gone(spared: tuple[int, ...], timeout: float = 1.0) -> None:
    """After `end_leftovers(keep=spared)`: wait until everything killed has died and been reaped (a process
    killed while stopped dies only once the kernel runs it again), so that a kept test's process goes on beside
    nothing the test left. Killed grandchildren come to this init as their parents die, and are reaped here."""
    spared_pids = {1, os.getpid(), *spared}
    deadline = time.monotonic() + timeout
    while True:
        reap()
        if all(int(entry) in spared_pids for entry in os.listdir("/proc") if entry.isdigit()):
            return
        if time.monotonic() >= deadline:
            return  # stopped and killed: it never runs again, whenever the kernel finishes it
        time.sleep(0.001)


def reap() -> None:
    """Collect every child that has ended, without waiting for any (keeping how a watched one ended)."""
    while True:
        try:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid in swept:
            swept[pid] = (status, usage)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except OSError:
        pass  # gone already, or (init) not ours to signal
