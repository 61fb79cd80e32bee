"""Each test's own process: forked from the post-import process, started on the judge's request, ended, and
everything it left behind killed before the next test starts. Runs inside the sandbox; standard library only.

A test's process is forked ahead of time: it reseeds its generators and sets its CPU limit, then waits on a
pipe until `fork_test` hands it the judge's request. Where the sandbox has a pid namespace and a /proc of its
own (every forked sandbox child, a fresh container), the next test's process is forked *while the current test
runs*, and a test that ends is not waited for: its process says on a pipe that the judge ended it, the
post-import process stops every other process of the namespace at once (`kill(-1, SIGSTOP)`, which no fork can
slip past), kills each one but the waiting next process, lets that one go on, and reports at once. The kernel
tears the old address spaces down on another core while the next test runs, and the dead are reaped later.
Fork and teardown of a process that holds torch cost a few milliseconds each; off the path between two tests,
they no longer add up over a suite of dozens.

Elsewhere (a local sandbox without a pid namespace, a kernel without pidfd_open) the next process is forked once
the last one has been reaped, as before. Either way no test's process ever runs beside another test's: the next
one starts only after the last one and its leftovers are dead or stopped for good.

**Kept for the next test of its deliverable.** Where the judge asks (the next test belongs to the same
deliverable) and the forked-ahead path runs, a test's process that is as it started — the same global state
(`globalstate.fingerprint`), no thread or child of its own left, little memory grown, CPU to spare below its
hard limit — says so on its pipe instead of exiting: the post-import process stops and kills everything else the
test left in the namespace, lets it and the waiting next process go on, and reports "kept". The kept process
reseeds, moves its CPU limit to what it used plus a test's, and serves the next test. Anything else (a changed
grad mode or default dtype, a monkeypatch, a daemon thread) ends it as before, and the next test gets a fresh
fork: a test that changes global state still costs only itself.

**Parked for a later test of its deliverable.** When the next test belongs to another deliverable but a later one
belongs to this test's (its tests of a less visible isolation group, say), the judge asks for the same check and,
where it passes, the process waits on its own socket instead of the channel ("parked"): everything else the test
left is killed as for a kept one, the other deliverables' tests run in their own processes beside it, and the
judge's later "fork" that names it wakes it to serve that test. The isolation groups' order still holds: a parked
process has seen only tests at least as visible as any test that runs while it waits, and no test of a more
visible group runs after it wakes. A parked process that does not answer its wake-up (the next test's code can
kill it, or stop it) is killed and replaced by a fresh fork, as is one over `globalstate.MAX_PARKED` (or one that
grew by more than a few MB).
"""

from __future__ import annotations

import os
import resource
import select
import signal
import socket
import time
from typing import Any

import globalstate
import leftovers
import wire
from calloutput import OUTPUT_LIMIT, Mirror, Mirrors, new_mirror
from testsignals import TestSignals

FORK_RETRY_SECONDS = 2.0  # a fork refused for the process limit waits this long for the dead to be reaped

def _fork() -> int:
    """fork(), waiting briefly where the process limit refuses it while the last test's dead are torn down."""
    deadline = time.monotonic() + FORK_RETRY_SECONDS
    while True:
        try:
            return os.fork()
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            leftovers.reap()
            time.sleep(0.005)


class TestProcesses:
    """The server's half that forks, starts and ends test processes (mixed into `student_server.Server`)."""

    reader: wire.FrameReader
    cpu_seconds: int

    def __init__(self) -> None:
        self.in_test = False  # this process is a test's (it serves that test's calls, then exits)
        self.spare: tuple[int, int, int] | None = None  # the next test's process: (pid, its go pipe, its done pipe)
        self.done_fd = -1  # in a test's process: where it says that the judge ended the test
        self.ahead: bool | None = None  # fork the next test's process while a test runs (decided at the first)
        self.held: list[int] = []  # descriptors about the running test that a process forked now must not keep
        # Test processes parked for a later test of their deliverable, by the request that forked them:
        # (pid, its socket, its pidfd).
        self.parked: dict[str, tuple[int, int, int]] = {}
        self.baseline: tuple[Any, ...] | None = None  # in a test's process: its global state when it started
        self.baseline_rss = 0
        # In the post-import process: the global state each test's process starts with, read once, before the
        # first fork (each fork inherits it rather than reading its own: that reading copies ~300 pages).
        self.start_state: tuple[Any, ...] | None = None
        # What a test's process printed in the call it is in, should it die there (`calloutput`): in a test's
        # process its own; in the post-import process each live test's process's, by pid.
        self.mirror: Mirror | None = None
        self.mirrors = Mirrors()
        self.signals = TestSignals()  # the judge's interrupt, for a test's process that timed out

    def send(self, message: dict[str, Any]) -> None:
        raise NotImplementedError

    def keep_for_next_test(self, park: bool = False) -> bool:
        """In a test's process, on the judge's "exit" with keep: serve the next test too, if nothing this test did
        could reach it (see the module's docstring); with `park`, wait until a later test of this deliverable
        wakes it (`fork_test`). False: the caller ends the process as usual."""
        if not self.ahead or self.done_fd < 0 or self.baseline is None:
            return False
        if globalstate.has_children() or globalstate.fingerprint() != self.baseline:
            return False
        growth = globalstate.PARK_GROWTH_BYTES if park else globalstate.KEEP_GROWTH_BYTES
        if globalstate.resident_bytes() - self.baseline_rss > growth:
            return False
        if self.cpu_seconds:
            soft, hard = self._test_cpu_limit()
            if hard != resource.RLIM_INFINITY and soft >= hard:
                return False  # the next test could not have its full limit and a second of grace
            resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
        globalstate.reseed()
        try:
            os.write(self.done_fd, b"p" if park else b"k")
        except OSError:
            return False  # the post-import process does not watch for it (no pidfd): end as usual
        if park:
            request_id = os.read(self.done_fd, 256)  # off the channel: other tests' processes use it meanwhile
            if not request_id:
                os._exit(0)  # the post-import process went away, or ended it instead
            # Awake: the post-import process answers the judge's "fork" for it ("resumed") once it reads this.
            try:
                os.write(self.done_fd, WOKE)
            except OSError:
                os._exit(0)
            self.reader = wire.FrameReader()  # what other processes read from the channel meanwhile is theirs
        return True

    def serve_in_place(self) -> dict[str, Any]:
        """The judge's "fork" where a fork would not run the submission as imported (`student_server.load` said
        "forks": false): this process serves the test itself, with a test's CPU limit and fresh random state, and
        the judge ends the whole sandbox after the test (the next one imports the submission again)."""
        self.in_test = True
        self.signals.disarm()
        globalstate.reseed()
        if self.cpu_seconds:
            soft, hard = self._test_cpu_limit()
            resource.setrlimit(resource.RLIMIT_CPU, (soft if hard == resource.RLIM_INFINITY else min(soft, hard),
                                                     hard))
        return {"ok": True, "value": "in_place"}

    def _test_cpu_limit(self) -> tuple[int, int]:
        """(soft, hard) RLIMIT_CPU that gives a test run in this process, which has used CPU already, its own
        limit: what it has used, a second of grace, then the test's seconds; the hard limit as it is."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        return int(usage.ru_utime + usage.ru_stime) + 1 + self.cpu_seconds, hard

    def end_own_test(self) -> None:
        """In a test's process, on the judge's "exit": say so to the post-import process, then end."""
        if self.done_fd >= 0:
            try:
                os.write(self.done_fd, b"x")
            except OSError:
                pass
        os._exit(0)

    def prefork(self) -> tuple[int, int, int] | None:
        """Fork the next test's process now; it waits, off the channel, until `fork_test` hands it a request.

        Returns (pid, the pipe that starts it, the pipe it says it ended on) here; None in the forked process,
        once started (it then carries on in `serve()` as the test's process).
        """
        go_r, go_w = os.pipe()
        # Its end of the test: "x" ended, "k" kept, "p" parked; a parked process is woken on the same socket.
        done_r, done_w = (s.detach() for s in socket.socketpair())
        mirror = new_mirror(OUTPUT_LIMIT)
        try:
            pid = _fork()
        except OSError:
            for fd in (go_r, go_w, done_r, done_w):
                os.close(fd)
            if mirror is not None:
                mirror.close()
            raise
        if pid:
            os.close(go_r)
            os.close(done_w)
            if mirror is not None:
                self.mirrors.by_pid[pid] = mirror
            return pid, go_w, done_r
        os.close(go_w)
        os.close(done_r)
        # The running test's and the parked ones' sockets, pidfds and output: nothing for a later test to hold.
        for fd in (*self.held, *(fd for _, *fds in self.parked.values() for fd in fds)):
            os.close(fd)
        self.mirrors.close_all()
        self.held = []
        self.parked = {}
        self.mirror = mirror
        self.in_test = True
        self.spare = None
        self.done_fd = done_w
        self.signals.start_test_process()
        globalstate.reseed()
        if self.cpu_seconds:
            _, hard = resource.getrlimit(resource.RLIMIT_CPU)
            resource.setrlimit(resource.RLIMIT_CPU, (self.cpu_seconds, hard))
        if self.ahead:  # (only this path can keep a test's process for the next test)
            self.baseline = self.start_state if self.start_state is not None else globalstate.fingerprint()
            self.baseline_rss = globalstate.resident_bytes()
        request_id = os.read(go_r, 256)
        os.close(go_r)
        if not request_id:
            os._exit(0)  # the post-import process went away before this test came
        self.reader = wire.FrameReader()  # whatever the post-import process had buffered was not this test's
        self.send({"ok": True, "value": "forked", "id": request_id.decode("ascii", "replace")})
        return None

    def fork_test(self, request: dict[str, Any]) -> None:
        """Run one test in a fresh fork of this post-import process; report once it has ended.

        The fork (made ahead of time: `prefork`) answers the request itself ("forked") and serves the test's
        calls on the same channel until the judge says "exit"; whatever global state the test changes dies with
        it. This process then ends everything the test left behind and reports how the test's process ended.
        """
        if self.ahead is None:
            self.ahead = leftovers.can_fork_ahead()
            if self.ahead:
                self.start_state = self.signals.fingerprint_of_a_fork()
        # The judge says when no later test of this sandbox will need a fresh process: no spare is forked then.
        want_spare = request.get("spare") is not False
        request_id = str(request.get("id", ""))[:64].encode("ascii", "replace")
        if self._resume(request, request_id, want_spare):
            return
        for _ in range(2):
            spare, self.spare = self.spare or self.prefork(), None
            if spare is None:
                return  # this is the test's process now
            pid, go, done = spare
            try:
                os.write(go, request_id)
                break
            except OSError:  # it died while it waited (the OOM killer, say): reap it, fork a fresh one
                os.close(done)
                _reap_one(pid)
                self.mirrors.printed(pid, died=False)
            finally:
                os.close(go)
        else:
            raise RuntimeError("no process for the test could be started")  # this process ends; the judge sees it
        pidfd = _pidfd(pid) if self.ahead else None
        if pidfd is not None:
            self._run_forked_ahead(request, pid, done, pidfd, want_spare)
            return
        os.close(done)
        self.signals.running = (pid, None)
        _, status, usage = os.wait4(pid, 0)
        self.signals.running = None
        leftovers.end_leftovers()
        self.reader = wire.FrameReader()  # the fork consumed whatever was buffered when it started
        self._report_end(request, status, usage, self.mirrors.printed(pid))
        self.spare = self.prefork() if want_spare else None

    def _resume(self, request: dict[str, Any], request_id: bytes, want_spare: bool) -> bool:
        """Wake the process parked for this test, if the judge names one and it wakes; else (it died or stopped
        while parked: the test before could kill it) end it, and this test gets a fresh fork."""
        entry = self.parked.pop(str(request.get("resume", "")), None)
        if entry is None:
            return False
        pid, done, pidfd = entry
        if not _woken(done, request_id):
            _end_parked(pid, done, pidfd)
            self.mirrors.printed(pid, died=False)
            return False
        # Said here, not by the woken process: one that never woke has said nothing the judge could take for it.
        self.send({"ok": True, "value": "resumed", "id": request_id.decode("ascii", "replace")})
        self._run_forked_ahead(request, pid, done, pidfd, want_spare)
        return True

    def _spared(self, *pids: int) -> tuple[int, ...]:
        """`pids`, the waiting next test's process and the parked ones: what ending a test's leftovers spares."""
        return (*pids, *((self.spare[0],) if self.spare else ()), *(entry[0] for entry in self.parked.values()))

    def _run_forked_ahead(self, request: dict[str, Any], pid: int, done: int, pidfd: int, want_spare: bool) -> None:
        self.held = [done, pidfd]
        leftovers.swept[pid] = None
        self.signals.running = (pid, pidfd)  # from now: the spare's fork below takes milliseconds
        try:
            if self.spare is None and want_spare:  # (a woken parked process leaves the waiting one in place)
                self.spare = self.prefork()  # the next test's, forked while this test runs
        except OSError:
            self.spare = None  # the process limit: the next test forks its own once this one is over
        if self.in_test:
            return  # the process forked just now, started for a later test
        while (ended := _wait_for_end(pid, done, pidfd)) in (KEPT, PARKED):
            # It serves a later test too: everything else the test left goes, it and the next process stay.
            if ended == PARKED and len(self.parked) >= globalstate.MAX_PARKED:
                ended = None  # one too many: it ends as any other test's process (its socket closes below)
                break
            kept = self._spared(pid)
            leftovers.end_leftovers(keep=kept)
            leftovers.wait_gone(kept)
            if ended == PARKED:
                self.signals.running = None
                self.parked[str(request.get("id"))] = (pid, done, pidfd)
                self.held = []
                leftovers.swept.pop(pid, None)
                self.send({"ok": True, "parked": True, "id": request.get("id")})
                return
            self.send({"ok": True, "kept": True, "id": request.get("id")})
        self.signals.running = None  # (before its pidfd's number can name another descriptor)
        self.held = []
        os.close(done)
        os.close(pidfd)
        leftovers.end_leftovers(keep=self._spared() or None)
        leftovers.swept.pop(pid, None)
        self.reader = wire.FrameReader()
        printed = self.mirrors.printed(pid, died=ended is not None)
        # None: the judge ended it, and it is torn down while the next test runs (no status or CPU time to tell).
        self._report_end(request, *(ended or (0, None)), printed)

    def _report_end(self, request: dict[str, Any], status: int, usage: Any, printed: str = "") -> None:
        cpu = round(usage.ru_utime + usage.ru_stime, 4) if usage is not None else None
        self.send({"ok": True, "reaped": True, "id": request.get("id"), "value": {
            "status": status, "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None, "cpu": cpu,
            **({"output": printed} if printed else {})}})


KEPT = "kept"
PARKED = "parked"
WOKE = b"r"  # a parked process's answer to its wake-up, on its own socket
# How long a parked process has to answer its wake-up before a fresh fork serves the test instead: a live one
# answers within milliseconds; one stopped while parked never does. Well inside any test's time limit.
WAKE_SECONDS = 0.5


def _woken(done: int, request_id: bytes) -> bool:
    """Send a parked process its wake-up and wait for it to answer; False where it died or stopped while parked.

    A write alone does not tell: a process killed a moment ago still holds its socket open while the kernel tears
    down its memory, so the wake-up lands, unread, and the socket then closes with a reset."""
    try:
        os.write(done, request_id)
        ready, _, _ = select.select([done], [], [], WAKE_SECONDS)
        return bool(ready) and os.read(done, 1) == WOKE
    except OSError:  # gone before the write, or reset: it closed with the wake-up unread
        return False


def _end_parked(pid: int, done: int, pidfd: int) -> None:
    """Kill a parked process that did not wake and wait until it is gone: nothing of it may read the channel once
    the test's fresh process serves it."""
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        select.select([pidfd], [], [])  # readable once it has exited (a SIGKILL is never refused or held)
    except OSError:
        pass
    os.close(done)
    os.close(pidfd)
    _reap_one(pid)


def _wait_for_end(pid: int, done: int, pidfd: int) -> tuple[int, Any] | str | None:
    """Wait until the test's process says the judge ended it (None), that it serves the next test too (KEPT) or
    waits for a later one (PARKED), or dies first: (status, rusage or None)."""
    watching = [done, pidfd]
    while True:
        ready, _, _ = select.select(watching, [], [])
        if done in ready:
            try:
                said = os.read(done, 1)
            except ConnectionResetError:  # it ended with something we sent unread: only its exit tells how
                said = b""
            if said == b"x":
                return None
            if said == b"k":
                return KEPT
            if said == b"p":
                return PARKED
            if not said:
                watching.remove(done)  # every copy of its write end is closed: only its exit can tell now
        if pidfd in ready:
            try:
                _, status, usage = os.wait4(pid, 0)
            except ChildProcessError:  # a sweep while forking the next process collected it first
                return leftovers.swept.get(pid) or (signal.SIGKILL, None)
            return status, usage


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None  # out of descriptors, say: this test ends the plain way


def _reap_one(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass  # reaped already
