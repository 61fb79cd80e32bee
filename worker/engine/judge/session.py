"""A judge's connection to the student: starts sandboxes, loads the submission, times every call.

When the student process hangs, runs out of memory or dies, the test in progress ends with that limit's status.
A test's process that died, or that timed out and was interrupted (`worker/sandbox/testsignals.py`), leaves its
sandbox to serve the next test; any other end throws the sandbox away, and the next call starts a fresh one and
imports the submission again. Either way one bad test costs only its own points.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from worker.engine.errors import InfrastructureError
from worker.engine.judge import outcomes
from worker.engine.judge.outcomes import LoadFailure, SandboxLimit, StudentError, call_error, load_message, location
from worker.engine.judge.overtime import WALL_FACTOR, Overtime
from worker.engine.judge.runclock import RunClock
from worker.engine.judge.testprocess import PerTestProcesses
from worker.engine.runners.base import ExitInfo, Runner, Sandbox, SandboxSpec, SandboxTimeout
from worker.sandbox import wire

STARTUP_TIMEOUT = 90.0
# How long a timed-out test's process has to be reported ended once interrupted (a live sandbox takes milliseconds).
INTERRUPT_TIMEOUT = 2.0
LAST_OUTPUT_CHARS = 800  # of a sandbox's stderr, quoted when it ended


class StudentSession(PerTestProcesses):
    """Owns the current sandbox for one submission and turns replies into values or exceptions."""

    def __init__(self, runner: Runner, spec: SandboxSpec, files: dict[str, str], module: str) -> None:
        self.runner = runner
        self.spec = spec
        self.files = files
        self.module = module
        self.sandbox: Sandbox | None = None
        self._waiting: list[Sandbox] = []  # started ahead of their use, taken in order
        self.loaded = False
        self.reader = wire.FrameReader()
        self.load_failure: LoadFailure | None = None
        self.deadline = self.soft_deadline = float("inf")
        self.run = RunClock()  # the run's limit (`runclock.py`), started with the job
        self.overtime = Overtime(spec.limits.test_timeout)  # the current test's, past its limit
        self.sandboxes_started = 0
        self.sandboxes_ahead = 0  # of those, started before the job came (`hand_over`)
        self.output: list[str] = []
        self.fork_id: str | None = None  # the request that forked the current test's process, while it lives
        self.oom_seen = 0  # the current sandbox's OOM kills, as last read (`_oom_killed`)
        self._ending: str | None = None  # the last test's process, asked to exit, not yet reported gone
        self._ending_keep = False  # ... and asked to serve the next test too, if it can
        self._ending_park: str | None = None  # ... or to wait for a later test of this deliverable
        # Test processes parked for a later test of their deliverable: deliverable -> (its fork id, its sandbox).
        self._parked: dict[str, tuple[str, Sandbox]] = {}
        self._resume: str | None = None  # the current test's deliverable, whose parked process may serve it
        self.processes_forked = self.processes_kept = 0  # test processes forked; tests served by a kept one
        # Whether tests fork from the post-import process; False where its import started a thread (see
        # `worker/sandbox/student_server.py`, load): each test then runs in a freshly imported sandbox.
        self.forks = True
        self.in_place = False  # the current test runs in the post-import process itself
        self._imports, self._reimported = 0, 0.0  # imports so far; seconds of the later ones given back
        self._losses = 0  # sandboxes lost to a crash or a timeout (`_lose_sandbox`)
        self._spare_wanted, self._last = True, False
        self._group = -1  # the least visible isolation group the current sandbox has served (see enter_group)

    # -- lifecycle -----------------------------------------------------------------------------------
    def start_test(self, spare: bool = True, deliverable: str | None = None, last: bool = False) -> None:
        """Start the per-test clocks: the limit, past which the judge looks whether the sandbox still computes,
        and the wall-clock backstop where it cannot tell (`overtime.py`; the CPU limit is the kernel's).

        `spare`: a later test of this sandbox will need a fresh process (the sandbox forks it ahead of time).
        `deliverable`: the test's, whose process parked by an earlier test (`end_test`) may serve it.
        `last`: no test follows (none needs a sandbox started ahead).
        """
        self._spare_wanted, self._last = spare, last
        self._resume = deliverable
        now = time.monotonic()
        self.soft_deadline = now + self.spec.limits.test_timeout
        self.deadline = now + self.spec.limits.test_timeout * WALL_FACTOR
        self.overtime.new_test()
        self.output = []

    def _drop_sandbox(self) -> None:
        """Stop the current sandbox, and what ran in it with it; the next call takes a spare, if one was started."""
        if self.sandbox is not None:
            self.sandbox.stop()
        self.sandbox, self.loaded, self.in_place = None, False, False
        self.fork_id = self._ending = None

    def _lose_sandbox(self) -> None:
        """The current sandbox is stuck, broken or gone: stop it (its parked processes too), keep those started
        ahead (they ran nothing of this submission) and start its replacement now, two from the second loss on:
        on the fresh path each is a container that the next test would wait for, two at once ready sooner each."""
        if self.sandbox is None:
            return  # lost already (a second report of the same end)
        self._parked, self._group = {}, -1
        self._losses += 1
        over = self._last or self.run.over()
        self._replace(ahead=0 if over else 2 if self._losses > 1 else 1)

    def _replace(self, ahead: int) -> None:
        """Stop the current sandbox and have `ahead` sandboxes starting for the tests to come; our time, not the
        test's or the run's (`_give_back`)."""
        began = time.monotonic()
        self._drop_sandbox()
        try:
            self.warm_up(ahead)
        except InfrastructureError:
            pass  # the next test starts one on its path, and fails as ours if it cannot
        self._give_back(time.monotonic() - began)

    def close(self) -> None:
        """Stop the sandboxes, if any."""
        for sandbox in filter(None, (self.sandbox, *self._waiting)):
            sandbox.stop()
        self.sandbox, self._waiting = None, []
        self.loaded = self.in_place = False
        self.fork_id = self._ending = None
        self._parked = {}
        self._group = -1

    def hand_over(self, sandboxes: list[Sandbox]) -> None:
        """Use sandboxes a pool started ahead of time: the first for the first call, the rest as spares."""
        self._waiting.extend(sandboxes)
        self.sandboxes_started += len(sandboxes)
        self.sandboxes_ahead += len(sandboxes)

    def enter_group(self, rank: int) -> None:
        """The next test belongs to isolation group `rank` (0 visible, 1 after_due_date, 2 hidden).

        Groups run in order of decreasing visibility, each test of a new group in a process of its own, so one
        sandbox serves them all: whatever a test leaves in it (a file in /tmp, say) can reach only tests whose
        output the student sees no sooner than its own. Should a more visible group ever follow a less visible
        one, it gets a sandbox that has seen none of the calls so far.
        """
        if rank < self._group:
            self._drop_sandbox()
            self._group = -1
        self._group = max(self._group, rank)

    def warm_up(self, ahead: int = 1) -> None:
        """Start sandboxes ahead of their first call, so that their start-up overlaps the judge's own, until
        `ahead` of them wait."""
        while len(self._waiting) < ahead and (sandbox := self.runner.warm(self.spec)) is not None:
            self._waiting.append(sandbox)
            self.sandboxes_started += 1

    def _ensure_loaded(self, fn: str) -> Sandbox:
        if self.load_failure is not None:
            self._note_printed(self.load_failure.printed)  # shown with every test, as with the first
            raise StudentError(self.load_failure.message, kind="import")
        if self.run.over():  # an earlier test took the run past its limit: this one times out, unstarted
            raise outcomes.run_over(self.spec.limits, fn)
        if self.sandbox is not None and self.loaded:
            return self.sandbox
        # Starting a sandbox is our cost, not the student's: the test's clock stops meanwhile.
        paused = time.monotonic()
        warm = self._waiting.pop(0) if self._waiting else None
        sandbox = self._start(warm) if warm is not None else None
        if sandbox is None:  # no warm sandbox, or it died while it waited: start a new one
            sandbox = self.runner.prepare(self.spec)
            self.sandboxes_started += 1
            sandbox = self._start(sandbox, must=True)
        assert sandbox is not None
        self._give_back(time.monotonic() - paused)
        importing = time.monotonic()
        try:
            reply = self._exchange({"op": "load", "files": self.files, "module": self.module}, during="import")
        except SandboxLimit as exc:
            if self._imports == 0 or not self.run.past():  # (not an import again that the run's limit cut)
                # Importing again would fail the same way and cost every later test the same wait. What the import
                # printed went to the sandbox's stderr too (`worker/sandbox/calloutput.py`, Echo), read to its end
                # now that the sandbox has stopped.
                self.load_failure = LoadFailure(f"{self.module}.py could not be imported: {exc}",
                                                last_output(sandbox))
                self._note_printed(self.load_failure.printed)
            self.close()  # no later test needs a sandbox, nor those started ahead
            raise
        if not reply.get("ok"):
            error = reply.get("error") if isinstance(reply.get("error"), dict) else {}
            self.load_failure = LoadFailure(load_message(error, self.module), str(error.get("output") or ""))
            self._note_printed(self.load_failure.printed)
            self.close()
            raise StudentError(self.load_failure.message, kind="import")
        self._note_output(reply)
        self.loaded = True
        self.forks = reply.get("forks") is not False
        self._imports += 1
        if self._imports > 1 and not self.forks:
            # Imported again only because the last test ran in place: like a sandbox's start, not the test's time
            # (up to one run's limit in all, so that a slow import cannot hold a worker for ever).
            again = min(time.monotonic() - importing, self.spec.limits.run_timeout - self._reimported)
            self._reimported += again
            self._give_back(again)
        return sandbox

    def _give_back(self, seconds: float) -> None:
        """`seconds` were ours, not the test's or the run's: every clock moves on, the launcher's backstop too."""
        self.deadline += seconds
        self.soft_deadline += seconds
        self.run.give_back(seconds)

    def _start(self, sandbox: Sandbox, must: bool = False) -> Sandbox | None:
        """Take `sandbox` into use and wait until its server answers a ping (it has imported torch then).

        A ping rather than the server's spontaneous ready frame, because a pooled sandbox may have said ready
        before anyone listened. Returns None (or raises InfrastructureError when `must`) if it never answers.
        """
        self.reader = wire.FrameReader()
        self.sandbox = sandbox
        self.loaded = False
        self.oom_seen = 0  # (its memory cgroup is its own, new with it)
        try:
            sandbox.adopt()
            sandbox.write(wire.encode_frame({"op": "ping", "id": "start"}))
            while True:
                frame = self._receive(sandbox, time.monotonic() + STARTUP_TIMEOUT, during=None)
                if frame.get("id") == "start" and frame.get("value") == "pong":
                    return sandbox
        except (SandboxLimit, OSError) as exc:
            self.close()
            if must:
                raise InfrastructureError(f"the sandbox did not start: {exc}") from exc
            return None

    # -- calls ---------------------------------------------------------------------------------------
    def call(self, fn: str, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Run solution.fn in the sandbox; return the raw successful reply or raise."""
        self._ensure_loaded(fn)
        self._ensure_test_process(fn)
        reply = self._exchange({"op": "call", "fn": fn, "args": args, "kwargs": kwargs}, during=fn)
        self._note_output(reply)
        if reply.get("ok"):
            return reply
        raise call_error(fn, reply.get("error", {}))

    def _exchange(self, request: dict[str, Any], during: str | None,
                  request_id: str | None = None) -> dict[str, Any]:
        sandbox = self.sandbox
        assert sandbox is not None
        # A fresh id per request: a reply to anything else (a frame a submission wrote) ends this call below,
        # so it can never pass for the answer to a later one.
        request_id = request_id or secrets.token_hex(8)
        self.overtime.new_call(time.monotonic())
        try:
            sandbox.write(wire.encode_frame({**request, "id": request_id}))
        except SandboxTimeout:
            raise self._timed_out(during, ask=False) from None  # (part of a frame in the channel: not to be kept)
        except OSError:
            raise self._died(during) from None
        while True:
            reply = self._receive(sandbox, None, during)
            if reply.get("id") == request_id and not reply.get("reaped"):
                return reply
            if self.fork_id is not None and reply.get("id") == self.fork_id and reply.get("reaped"):
                # The test's process ended while we waited for it: the post-import process says how.
                self.fork_id = None
                ended = outcomes.test_process_ended(reply.get("value"), self.spec.limits, location(during),
                                                    self._oom_killed())
                self._note_output(reply.get("value"))  # what the call it died in had printed, if anything
                if reply.get("id") == request_id:  # the request that was to start it: it never said "forked"
                    raise outcomes.NotStarted(ended.status, str(ended))
                raise ended
            # Nothing else can come now from the sandbox's own code: it answers each request once, with the
            # request's id, and says "reaped", "kept" or "parked" only for a test's process that the judge ended
            # (read in `_confirm_ended`). So this frame was written by the student's code. Waiting on would let it
            # swallow the real reply and hold the call until its limit, read as a timeout; it fails the call now.
            self._lose_sandbox()
            raise SandboxLimit("crashed", f"the student process sent a reply nobody asked for {location(during)}")

    def _receive(self, sandbox: Sandbox, deadline: float | None, during: str | None) -> dict[str, Any]:
        """The next frame from `sandbox`, by `deadline`; None: a call's, by the test's clocks (past its limit the
        sandbox is looked at every window, see `overtime.py`, and the run's limit ends every wait)."""
        try:
            while (frame := self.reader.next_frame()) is None:
                now = time.monotonic()
                ends = deadline
                if ends is None:  # a call: the test's clocks
                    if now >= self.soft_deadline and now >= self.overtime.next_look():
                        why = self.overtime.look(sandbox)
                        if why is not None and not self._take(sandbox, 0.0, during):
                            raise self._timed_out(during, why)
                        now = time.monotonic()
                    self.run.over()  # (at the run's deadline, it may move on first)
                    ends = self.run.deadline if self.overtime.load_aware else min(self.deadline, self.run.deadline)
                if now >= ends:
                    raise self._timed_out(during)
                if deadline is None:  # wake for the next look, too
                    ends = min(ends, max(self.soft_deadline, self.overtime.next_look()))
                self._take(sandbox, ends - now, during)
        except wire.WireError as exc:
            self._lose_sandbox()
            raise SandboxLimit("crashed", f"the student process sent a malformed reply ({exc})") from None
        return frame

    def _take(self, sandbox: Sandbox, timeout: float, during: str | None) -> bool:
        """Feed the reader what the sandbox sends within `timeout` seconds; whether anything came. With no wait:
        an answer that came just as a look found the sandbox idle is an answer, not idling."""
        try:
            chunk = sandbox.read(timeout=max(0.0, timeout))
        except SandboxTimeout:
            return False
        if not chunk:
            raise self._died(during)
        self.reader.feed(chunk)
        return True

    def _timed_out(self, during: str | None, why: str | None = None, ask: bool = True) -> SandboxLimit:
        """The timeout that ends this call: `why` the sandbox's overtime said so ("idle", "computing"), or else
        the run's limit or the wall-clock backstop. With `ask`, the test's process is interrupted first, so that
        what its call printed is shown; only a sandbox that then reports its end is kept."""
        run_over = self.run.past()
        if not (ask and self._interrupt()):
            self._lose_sandbox()
        return outcomes.timeout(self.spec.limits, location(during), why, run_over)

    def _interrupt(self) -> bool:
        """Have the sandbox's post-import process end the test's process that timed out, and take what its call
        printed from its report of that end (`worker/sandbox/testsignals.py`). Whether the report came: the
        sandbox is then as after any test's process that died, the next test's process waiting. Our time."""
        sandbox, fork_id = self.sandbox, self.fork_id
        if sandbox is None or fork_id is None or self.in_place:
            return False  # nothing forked for the test to end: the sandbox goes
        began = time.monotonic()
        try:
            if not sandbox.interrupt():
                return False
            while True:
                frame = self.reader.next_frame()
                if frame is None:
                    chunk = sandbox.read(timeout=max(0.0, began + INTERRUPT_TIMEOUT - time.monotonic()))
                    if not chunk:
                        return False
                    self.reader.feed(chunk)
                elif frame.get("id") == fork_id and frame.get("reaped"):
                    break
                # Any other frame is the call's answer, come too late, or the student's: the timeout stands.
            self._note_output(frame.get("value"))
            self.fork_id = None
            return True
        except (SandboxTimeout, OSError, wire.WireError):
            return False
        finally:
            self._give_back(time.monotonic() - began)

    def _died(self, during: str | None) -> SandboxLimit:
        sandbox = self.sandbox
        info = sandbox.exit_info(wait=5.0) if sandbox else None
        # The OOM killer took one of its processes (read before its cgroups go with it): whatever code the end
        # left (SIGKILL's; its runner may know none, or the exit code of a parent of the victim), that is why.
        if info is not None and info.state not in ("lost", "oom") and self._oom_killed():
            info = ExitInfo("oom", info.code, "killed by the memory limit")
        # An import's: shown as what it printed instead (`_ensure_loaded`).
        tail = last_output(sandbox) if sandbox and during != "import" else ""
        if info is not None and info.state == "lost":
            self.close()  # ours (its zygote, its engine): the grading fails and runs again, nothing starts here
        else:
            self._lose_sandbox()
        return outcomes.sandbox_ended(info, tail, self.spec.limits, location(during))

    def _oom_killed(self) -> bool | None:
        """Whether the OOM killer killed a process of this sandbox since the last time this was asked (None: its
        runner cannot tell). Asked only when a test's process died of SIGKILL or the sandbox died: off every other
        path."""
        assert self.sandbox is not None
        count = self.sandbox.oom_kills()
        if count is None:
            return None
        killed, self.oom_seen = count > self.oom_seen, count
        return killed

    def _note_output(self, reply: Any) -> None:
        """Keep what a reply, or a "reaped" report's value, says the student's code printed (anything else: none)."""
        text = reply.get("output") if isinstance(reply, dict) else None
        if isinstance(text, str):
            self._note_printed(text)

    def _note_printed(self, text: str) -> None:
        """Keep `text`, what the student's code printed, to show with the current test (up to `output_kb`)."""
        if text:
            self.output.append(text[: self.spec.limits.output_kb * 1024])


def last_output(sandbox: Sandbox) -> str:
    """The end of what `sandbox` wrote to its stderr: what a sandbox that ended, or was ended, said last."""
    return sandbox.stderr_tail().strip()[-LAST_OUTPUT_CHARS:]
