"""A judge that collected one assignment's reference tests once and forks the judge of each job from there.

The judge zygote (`worker.engine.judge.zygote`) keeps one per assignment version (the manifest's content hash)
and GPU or not. It runs pytest up to the end of collection — configuration, the test modules imported with
their assertions rewritten, the items and their fixture closures — and then, where pytest would run the tests,
serves jobs instead: each job's judge is a fresh fork that binds the grading plugin to the job's student session
and runs the collected items, so no job sees what another job's tests changed, and none pays for collection.

Jobs come in on a pipe, one JSON line each; events go out on another, one JSON line each: `{"collected": pid}`
once ready (or `{"failed": reason}`), then per job `{"started": pid}` and `{"done": pid, "status": n}`.
The verdicts go to the file each job names, as with any judge. After each job it leases the next job's sandbox
child ahead (`worker.engine.judge.spare`).
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import select
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from worker.engine.errors import InfrastructureError
from worker.engine.judge.main import close_job, failed_job, open_job, prepare_pytest, pytest_args, write_verdicts
from worker.engine.judge.plugin import GradingPlugin
from worker.engine.judge.spare import Spare
from worker.engine.manifest import load_assignment
from worker.engine.runners.forked import ForkedSandbox

COLLECT_TIMEOUT = 120.0
PR_SET_PDEATHSIG = 1


class CollectedJudge:
    """The judge zygote's handle on one collecting judge (its child process)."""

    def __init__(self, job: dict[str, Any], scratch: str, close_in_child: Callable[[], None]) -> None:
        jobs_r, jobs_w = os.pipe()
        events_r, events_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(jobs_w)
            os.close(events_r)
            close_in_child()
            _serve(job, scratch, jobs_r, events_w)  # never returns
        os.close(jobs_r)
        os.close(events_w)
        self.pid = pid
        self._jobs = jobs_w
        self._events = events_r
        self._buffer = b""
        self._status: int | None = None
        ready = self._event(("collected", "failed"), time.monotonic() + COLLECT_TIMEOUT)
        if ready is None or "collected" not in ready:
            self.stop()
            reason = ready.get("failed") if ready else "it exited"
            raise InfrastructureError(f"the judge could not collect the reference tests: {reason}")

    def _event(self, keys: tuple[str, ...], deadline: float | None = None) -> dict[str, Any] | None:
        """The next event carrying one of `keys`; None when the process is gone (or, with a deadline, late)."""
        while True:
            line, sep, rest = self._buffer.partition(b"\n")
            if sep:
                self._buffer = rest
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict) and any(key in event for key in keys):
                    return event
                continue
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._events], [], [], timeout)
            if not ready:
                return None
            chunk = os.read(self._events, 65536)
            if not chunk:
                return None
            self._buffer += chunk

    def run(self, job: dict[str, Any], started: Callable[[int], None]) -> int:
        """Judge `job` in a fresh fork; `started(pid)` once it runs. Its wait status (-1: this judge died)."""
        try:
            os.write(self._jobs, (json.dumps(job) + "\n").encode())
        except OSError:
            self.stop()
            return -1
        event = self._event(("started",))
        if event is None:
            self.stop()
            return -1
        started(int(event["started"]))
        done = self._event(("done",))
        if done is None:
            self.stop()
            return -1
        return int(done.get("status", -1))

    def forget(self) -> None:
        """Close this handle's pipes without stopping the process (in a fork of the owner)."""
        for fd in (self._jobs, self._events):
            try:
                os.close(fd)
            except OSError:
                pass
        self._jobs = self._events = -1

    def alive(self) -> bool:
        """Whether the process still runs."""
        if self._status is not None:
            return False
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            self._status = -1
            return False
        if pid:
            self._status = status
            return False
        return True

    def stop(self) -> None:
        """End it at once (a judge it forked finishes its own job); idempotent."""
        self.forget()
        if self._status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self._status = -1


class CollectedJudges:
    """The judge zygote's collecting judges, one per assignment version and kind of sandbox; the most recently
    used `KEEP` stay."""

    KEEP = 3

    def __init__(self, close_in_child: Callable[[], None]) -> None:
        self.judges: dict[str, CollectedJudge] = {}
        self._close_in_child = close_in_child
        self.scratch = tempfile.mkdtemp(prefix="grader-judges-")  # pytest's empty ini; every judge's cwd

    def close_in_child(self) -> None:
        """In a process forked from the judge zygote: let go of every collecting judge's pipes (a judge whose
        job pipe another process still holds open would never see it close) and of what the zygote said."""
        for judge in self.judges.values():
            judge.forget()
        self._close_in_child()

    def for_job(self, job: dict[str, Any]) -> CollectedJudge | None:
        """A live collecting judge for `job`, started now if needed; None when collection failed (logged: the
        job then runs in a judge of its own, which reports what failed)."""
        try:
            key = job_key(job)
        except (OSError, ValueError) as exc:
            print(f"judge zygote: cannot collect: {exc}", file=sys.stderr)
            return None
        judge = self.judges.pop(key, None)
        if judge is not None and not judge.alive():
            judge.stop()
            judge = None
        if judge is None:
            try:
                judge = CollectedJudge(job, self.scratch, self.close_in_child)
            except InfrastructureError as exc:
                print(f"judge zygote: {exc}", file=sys.stderr)
                return None
        self.judges[key] = judge  # most recent last
        while len(self.judges) > self.KEEP:
            self.judges.pop(next(iter(self.judges))).stop()
        return judge

    def stop(self) -> None:
        """Stop every collecting judge and remove their scratch folder."""
        judges, self.judges = list(self.judges.values()), {}
        for judge in judges:
            judge.stop()
        shutil.rmtree(self.scratch, ignore_errors=True)


def job_key(job: dict[str, Any]) -> str:
    """Jobs with the same key can share one collection: the same tests (by content), with or without a GPU (the
    runner and its sandbox are each job's own)."""
    assignment = load_assignment(Path(job["assignment_path"]))
    return json.dumps([str(assignment.path), assignment.content_hash(), bool(job.get("gpu"))])


class _Server:
    """The pytest plugin that, after collection, serves jobs instead of running the tests."""

    def __init__(self, grading: GradingPlugin, jobs: int, events: int) -> None:
        self.grading = grading
        self.jobs = os.fdopen(jobs, "r", encoding="utf-8")
        self.events = events
        self.serving = False

    def send(self, event: dict[str, Any]) -> None:
        os.write(self.events, (json.dumps(event) + "\n").encode())

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        self.serving = True
        for item in session.items:
            _ = item.location  # computed once here (a cached path computation) rather than in every job's judge
        # Each job's judge forks from here: its collector leaves the collected objects alone. (Not settle()'s huge
        # pages as well: collapsing what collection grew cost ~70 MB of this process's memory for ~4 ms a job.)
        gc.freeze()
        self.send({"collected": os.getpid(), "items": len(session.items)})
        spare = Spare(self.grading.assignment.limits)
        for line in self.jobs:
            job = json.loads(line)
            warm = spare.take(job)
            pid = os.fork()
            if pid == 0:
                self._judge(session, job, warm)
            spare.handed(warm)
            self.send({"started": pid})
            _, status = os.waitpid(pid, 0)
            self.send({"done": pid, "status": status})
            spare.done()
            spare.lease(job)  # the next job's child, confined and answering before that job comes
        spare.drop()
        return True

    def _judge(self, session: pytest.Session, job: dict[str, Any], warm: list[ForkedSandbox]) -> None:
        """In a job's fork: run the collected items against the job's submission (`warm`: its first sandbox,
        leased ahead), write the verdicts, leave."""
        self.jobs.close()
        os.close(self.events)
        try:
            try:
                context = open_job(job, list(warm))
                self.grading.bind(context.session, context.cuda)
                try:
                    if not (session.testsfailed and not session.config.option.continue_on_collection_errors):
                        _run_items(session)  # (pytest runs nothing when collection failed; nor do we)
                except InfrastructureError as exc:
                    self.grading.infrastructure_error = str(exc)
                verdicts = close_job(context, self.grading)
            except Exception as exc:
                verdicts = failed_job(exc)
            write_verdicts(job, verdicts)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)


def _run_items(session: pytest.Session) -> None:
    """pytest's own run loop (`_pytest.main.pytest_runtestloop`), over the items collected before the fork."""
    items = session.items
    for index, item in enumerate(items):
        nextitem = items[index + 1] if index + 1 < len(items) else None
        item.config.hook.pytest_runtest_protocol(item=item, nextitem=nextitem)
        if session.shouldfail or session.shouldstop:
            break


def _die_with_parent() -> None:
    """SIGKILL this process when the judge zygote dies: nothing else would end it (it serves a pipe from there)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0 or os.getppid() == 1:
        os._exit(1)


def _serve(job: dict[str, Any], scratch: str, jobs: int, events: int) -> None:
    """The collecting judge's life: collect `job`'s assignment, serve jobs until the pipe closes, exit."""
    status = 0
    try:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        _die_with_parent()
        if not job.get("gpu"):
            os.environ["CUDA_VISIBLE_DEVICES"] = ""  # as its jobs will see it, should a test module ask at import
        prepare_pytest()
        assignment = load_assignment(Path(job["assignment_path"]))
        grading = GradingPlugin(assignment)
        server = _Server(grading, jobs, events)
        args = pytest_args(assignment, scratch)
        os.chdir(scratch)
        pytest.main(args, plugins=[grading, server])
        if not server.serving:
            server.send({"failed": "pytest stopped before running tests"})
    except BaseException as exc:
        status = 70
        try:
            os.write(events, (json.dumps({"failed": f"{type(exc).__name__}: {exc}"}) + "\n").encode())
        except OSError:
            pass
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
