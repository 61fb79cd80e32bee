"""The signals around a test's process: the judge's interrupt, which has the post-import process end a test's
process that timed out (so that its end is reported with what its call printed), and the handlers each test's
process starts with. Runs inside the sandbox; standard library only.

A call that times out sends no reply: it was waiting or sleeping past its limit, its processes computed on
together, or the run's limit cut it. Before it stops such a sandbox, the judge has its runner send the
post-import process SIGUSR1 (the zygote, on the child's lease; `docker kill`; kill(2) from the host). The handler
kills the running test's process, and the post-import process reports that end as any other ("reaped"), with
what the call had printed (`calloutput.py`). The judge shows that output with the timeout, and, given the report,
keeps the sandbox: the next test starts at once in the process forked ahead for it.

Only this process handles SIGUSR1, and only while a test's process runs. Its sole effect is to end that process,
which any code of the submission could do to itself; a process of the submission that sends it gains nothing. A
namespace's init (this process, where the sandbox has a pid namespace) ignores a signal it has no handler for,
even from outside: the handler is installed once the submission has been imported, and a test's process gets
back whatever handler the import left (`start_test_process`).
"""

from __future__ import annotations

import os
import signal
from typing import Any

import globalstate


class TestSignals:
    """In the post-import process: which test's process the judge's interrupt ends, while one runs."""

    def __init__(self) -> None:
        # The running test's process, set while this process waits for it to end (from the moment it is started):
        # (its pid, its pidfd where there is one, which names it even once reaped).
        self.running: tuple[int, int | None] | None = None
        self.armed = False
        self.before: Any = signal.SIG_DFL  # the handler the import left, which each test's process gets back
        self.handler = self._interrupted  # (one bound method: a test's fingerprint compares handlers by id)

    def arm(self) -> None:
        """Handle the judge's interrupt from now on (the submission is imported: nothing of it replaces this)."""
        before = signal.signal(signal.SIGUSR1, self.handler)
        if not self.armed:
            self.before = signal.SIG_DFL if before is None else before  # None: set outside Python
        self.armed = True

    def disarm(self) -> None:
        """The import's handler back, where the submission's code runs in this process or a fork of it."""
        if self.armed:
            signal.signal(signal.SIGUSR1, self.before)
            self.armed = False

    def start_test_process(self) -> None:
        """In a test's process, as it starts: SIGXCPU's default back (the post-import process may be the
        namespace's init, which handles it: `student_server.load`), and the import's SIGUSR1."""
        signal.signal(signal.SIGXCPU, signal.SIG_DFL)
        self.disarm()
        self.running = None  # (the post-import process's, which forked this one while a test ran)

    def fingerprint_of_a_fork(self) -> tuple[Any, ...]:
        """This process's global state (`globalstate.fingerprint`) as a test's process forked from it has it once
        started: the same but for the handlers `start_test_process` sets."""
        xcpu, armed = signal.signal(signal.SIGXCPU, signal.SIG_DFL), self.armed
        self.disarm()
        try:
            return globalstate.fingerprint()
        finally:
            if xcpu is not None:
                signal.signal(signal.SIGXCPU, xcpu)
            if armed:
                self.arm()

    def _interrupted(self, _signum: int, _frame: object) -> None:
        running = self.running
        if running is None:
            return  # no test's process runs: the report the judge waits for has been sent, or none is due
        pid, pidfd = running
        try:
            if pidfd is not None:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            else:
                # Reaped only once the caller's wait returns: after that, the pid is the test's leftovers' to
                # take at most, and they are killed next all the same.
                os.kill(pid, signal.SIGKILL)
        except OSError:
            pass  # gone already
