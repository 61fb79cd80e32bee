"""The judge's half of each test's own process: it asks the sandbox to fork one for a test's first call (or to let
the last test's process serve it, kept or parked for it), and, when the test ends, to end that process, then
confirms that it did before the next test starts. The sandbox's half is `worker/sandbox/testprocs.py`."""

from __future__ import annotations

import secrets
import time
from typing import Any

from worker.engine.judge import outcomes
from worker.engine.judge.outcomes import SandboxLimit, location
from worker.engine.judge.runclock import RunClock
from worker.engine.runners.base import Sandbox, SandboxTimeout
from worker.sandbox import wire

END_TEST_TIMEOUT = 10.0


class PerTestProcesses:
    """Mixed into `session.StudentSession`, which owns the sandbox, its channel and the test's clocks."""

    sandbox: Sandbox | None
    run: RunClock
    deadline: float
    soft_deadline: float
    loaded: bool
    forks: bool
    in_place: bool
    fork_id: str | None
    processes_forked: int
    processes_kept: int
    _ending: str | None
    _ending_keep: bool
    _ending_park: str | None
    _parked: dict[str, tuple[str, Sandbox]]
    _resume: str | None
    _spare_wanted: bool
    _last: bool

    def _exchange(self, request: dict[str, Any], during: str | None,
                  request_id: str | None = None) -> dict[str, Any]:
        raise NotImplementedError

    def _receive(self, sandbox: Sandbox, deadline: float | None, during: str | None) -> dict[str, Any]:
        raise NotImplementedError

    def _ensure_loaded(self, fn: str) -> Sandbox:
        raise NotImplementedError

    def _lose_sandbox(self) -> None:
        raise NotImplementedError

    def _replace(self, ahead: int) -> None:
        raise NotImplementedError

    def end_test(self, keep: bool = False, park: str | None = None) -> None:
        """End the current test's process: whatever it changed or started goes with it.

        With `keep` (the next test belongs to the same deliverable), the process may instead serve the next test
        too, if it says that nothing this test did could reach that one (`worker/sandbox/globalstate.py`); with
        `park` (a deliverable, whose next test comes later), it may wait for that test instead.
        Only the request is sent here; that the process is gone (or kept) is confirmed before the next test's
        first call (`_confirm_ended`), so its exit overlaps pytest's bookkeeping between the tests.
        """
        if self.fork_id is None and self._ending is not None and not keep:
            # A test that made no call: a process kept for it must not serve a test of another deliverable.
            self._confirm_ended()
        fork_id, self.fork_id = self.fork_id, None
        sandbox = self.sandbox
        if fork_id is None or sandbox is None:
            return
        if self.in_place:
            # That process served the test itself: whatever the test changed goes with its sandbox, and the next
            # one is starting already (the next test imports the submission again).
            # Each later test needs a sandbox of its own: where that is a new container (the fresh mode), two
            # starting at once are ready sooner each than one after another (4.3 against 6.6 s, 2 cores).
            self._replace(ahead=0 if self._last else 2)
            return
        how = {"keep": True} if keep else {"park": True} if park else {}
        try:
            sandbox.write(wire.encode_frame({"op": "exit", "id": secrets.token_hex(8), **how}))
        except (SandboxTimeout, OSError):
            self._lose_sandbox()  # the post-import process is stuck or gone: the next test starts afresh
            return
        self._ending, self._ending_keep, self._ending_park = fork_id, keep, None if keep else park

    def _confirm_ended(self) -> None:
        """Wait for the report that the last test's process has ended, or was kept for this test (it is then the
        current one again); the wait is not the next test's time."""
        fork_id, self._ending = self._ending, None
        sandbox = self.sandbox
        if fork_id is None or sandbox is None:
            return
        paused, given = time.monotonic(), self.run.given
        try:
            deadline = paused + END_TEST_TIMEOUT
            while True:
                frame = self._receive(sandbox, deadline, during=None)
                if frame.get("id") == fork_id and frame.get("reaped"):
                    break
                if frame.get("id") == fork_id and frame.get("kept"):
                    if not self._ending_keep:  # never asked for: a test's process that says it for itself
                        raise SandboxLimit("crashed", "the student process sent a reply nobody asked for")
                    self.fork_id = fork_id
                    self.processes_kept += 1
                    break
                if frame.get("id") == fork_id and frame.get("parked"):
                    if self._ending_park is None:  # never asked for, as above
                        raise SandboxLimit("crashed", "the student process sent a reply nobody asked for")
                    self._parked[self._ending_park] = (fork_id, sandbox)
                    break
        except (SandboxLimit, OSError):
            self._lose_sandbox()  # the post-import process is stuck or gone: this test starts afresh
        waited = time.monotonic() - paused - (self.run.given - given)  # (a loss gave its own time back)
        self.deadline += waited
        self.soft_deadline += waited

    def _ensure_test_process(self, fn: str) -> None:
        """The first call of a test forks a process of its own from the post-import one (or takes over the last
        test's, kept for it)."""
        if self.fork_id is not None:
            return
        self._confirm_ended()
        if self.fork_id is not None:
            return  # the last test's process, kept: it serves this test too
        if not self.loaded:  # the post-import process was lost while the last test's process ended
            self._ensure_loaded(fn)
        if not self.forks:
            request_id = self.fork_id = secrets.token_hex(8)
            reply = self._exchange({"op": "fork", "in_place": True}, during=fn, request_id=request_id)
            if not (reply.get("ok") and reply.get("value") == "in_place"):
                self.fork_id = None
                raise SandboxLimit("crashed", f"the student process could not start the test ({location(fn)})")
            self.in_place = True
            self.processes_forked += 1  # (a process of the test's own all the same: a sandbox's, imported afresh)
            return
        request: dict[str, Any] = {"op": "fork", **({} if self._spare_wanted else {"spare": False})}
        parked = self._parked.pop(self._resume, None) if self._resume is not None else None
        if parked is not None and parked[1] is self.sandbox:
            request["resume"] = parked[0]  # the sandbox forks afresh if that process is gone
        for tries_left in (1, 0):
            request_id = self.fork_id = secrets.token_hex(8)
            try:
                reply = self._exchange(request, during=fn, request_id=request_id)
                break
            except outcomes.NotStarted:
                # The process forked ahead for this test died before it read the request: the test before killed
                # it, and it was still being torn down when the request came. None of this test ran: ask again.
                if not tries_left:
                    raise
                request.pop("resume", None)
        if not (reply.get("ok") and reply.get("value") in ("forked", "resumed")):
            self.fork_id = None
            raise SandboxLimit("crashed", f"the student process could not start the test ({location(fn)})")
        if reply.get("value") == "resumed":
            self.processes_kept += 1
        else:
            self.processes_forked += 1
