"""Waking a parked test process (`worker/sandbox/testprocs.py`): does the post-import process tell one that woke
from one that died or stopped while parked, and does it outlive one that died with its wake-up unread?

The parked processes here are plain forks of this process on a socket pair, as the post-import process's are; the
engine's tests (`tests/engine/test_engine_parked_processes.py`) run the whole path in a sandbox. A kill landing
between the wake-up's write and its read is a race there; here the process is stopped first, so it lands there
every time.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

SANDBOX = Path(__file__).resolve().parents[2] / "worker" / "sandbox"


@pytest.fixture
def testprocs(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The module as the sandbox imports it (its siblings are top-level modules there)."""
    monkeypatch.syspath_prepend(str(SANDBOX))
    import testprocs

    return testprocs


class Parked:
    """A forked process holding one end of a socket pair, as a parked test process holds its own."""

    def __init__(self, behaviour: Callable[[int], None]) -> None:
        ours, theirs = socket.socketpair()
        self.pid = os.fork()
        if self.pid == 0:
            ours.close()
            try:
                behaviour(theirs.fileno())
            finally:
                os._exit(0)
        theirs.close()
        self.done = ours.detach()
        self.pidfd = os.pidfd_open(self.pid)
        self.closed = False  # its descriptors (`_end_parked` closes them)

    def gone(self) -> bool:
        """Whether it has exited and been reaped."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        return False

    def close(self) -> None:
        if not self.closed:
            os.close(self.done)
            os.close(self.pidfd)
        if not self.gone():
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)


def wakes(done: int) -> None:
    """A parked process that reads its wake-up and answers it, then waits to be ended."""
    os.read(done, 256)
    os.write(done, b"r")
    os.read(done, 1)


def waits(done: int) -> None:
    """A parked process that never gets to read (it is stopped or killed first)."""
    time.sleep(60)


@pytest.fixture
def parked() -> Iterator[Callable[[Callable[[int], None]], Parked]]:
    made: list[Parked] = []

    def make(behaviour: Callable[[int], None]) -> Parked:
        made.append(Parked(behaviour))
        return made[-1]

    yield make
    for process in made:
        process.close()


def test_a_parked_process_that_answers_its_wake_up_is_woken(testprocs: ModuleType, parked: Callable) -> None:
    """Does a live parked process's answer count as woken?"""
    process = parked(wakes)
    assert testprocs._woken(process.done, b"request-1")


def test_a_parked_process_killed_with_its_wake_up_unread_is_not_taken_for_woken(
        testprocs: ModuleType, parked: Callable) -> None:
    """When the parked process is killed after its wake-up was written but before it read it (the kill of a test
    in between, still being torn down), is that seen, rather than the test given to a dead process?"""
    process = parked(waits)
    os.kill(process.pid, signal.SIGSTOP)  # (its wake-up will land, unread, as in a dying process's open socket)
    threading.Timer(0.1, os.kill, (process.pid, signal.SIGKILL)).start()
    started = time.monotonic()
    assert not testprocs._woken(process.done, b"request-1")
    assert time.monotonic() - started < testprocs.WAKE_SECONDS  # the reset told at once, not the wait's end


def test_the_post_import_process_outlives_a_test_process_that_ends_with_something_unread(
        testprocs: ModuleType, parked: Callable) -> None:
    """Does the wait for a test process's end say how it ended when the process closed its socket with data unread,
    instead of raising the reset (which ended the whole sandbox, read as the student's crash)?"""
    process = parked(waits)
    os.kill(process.pid, signal.SIGSTOP)
    os.write(process.done, b"request-1")
    os.kill(process.pid, signal.SIGKILL)
    status, _ = testprocs._wait_for_end(process.pid, process.done, process.pidfd)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def test_a_parked_process_stopped_while_parked_is_killed_and_gone(testprocs: ModuleType, parked: Callable) -> None:
    """Is a parked process that does not answer (stopped by the test in between) given up on within WAKE_SECONDS,
    then killed and reaped, so that nothing of it can read the channel that the test's fresh process uses?"""
    process = parked(waits)
    os.kill(process.pid, signal.SIGSTOP)
    started = time.monotonic()
    assert not testprocs._woken(process.done, b"request-1")
    assert time.monotonic() - started >= testprocs.WAKE_SECONDS
    testprocs._end_parked(process.pid, process.done, process.pidfd)
    process.closed = True
    assert process.gone()
