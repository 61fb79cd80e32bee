"""The judge zygote: a process that has imported torch and pytest once and forks a judge per job.

It owns the worker slot's sandbox zygotes (`SandboxZygotes`): each job's judge gets the socket of the one for
its kind of sandbox, and its sandboxes are that zygote's forked children. Such a job's judge is forked from the
collecting judge of its assignment (`worker.engine.judge.collected`), itself a fork of this process that
collected the reference tests once; a job no collecting judge can take is judged in a direct fork of this one.
In the "fresh" sandbox mode it instead keeps a sandbox warm (started, server importing torch) for the next
job's runner and limits and hands it to the forked judge: a sandbox still serves exactly one submission, it
just starts before the submission comes.
Control protocol, one JSON object per line: job in on stdin; `{"started": pid}` and `{"done": pid, "status": n}`
out on the original stdout. The verdicts go to the file each job names, as with a cold judge.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from worker.engine.judge.collected import CollectedJudges
from worker.engine.runners.base import Sandbox
from worker.engine.runners.forked import ZygoteHandle


def _pool_key(job: dict[str, Any]) -> str:
    """Jobs with the same key use the same kind of sandbox (which zygote serves them does not matter)."""
    options = {k: v for k, v in job.get("runner_options", {}).items() if k != "zygote"}
    return json.dumps([job["runner"], options, job["assignment_path"], job.get("gpu")], sort_keys=True)


def _prepare(job: dict[str, Any]) -> Sandbox | None:
    """A sandbox for jobs like this one, started now; None if that failed (the judge will start its own)."""
    from worker.engine.manifest import load_assignment
    from worker.engine.runners import make_runner
    from worker.engine.runners.base import SandboxSpec

    try:
        assignment = load_assignment(Path(job["assignment_path"]))
        runner = make_runner(job["runner"], **job.get("runner_options", {}))
        return runner.prepare_pooled(SandboxSpec(limits=assignment.limits, gpu=bool(job.get("gpu"))))
    except Exception as exc:
        print(f"judge zygote: could not prepare a warm sandbox: {exc}", file=sys.stderr)
        return None


class SandboxZygotes:
    """The sandbox zygotes (containers or processes) this judge zygote owns: one per kind of sandbox, the
    two most recently used kept. Their children are the sandboxes of every job forked from here."""

    KEEP = 2

    def __init__(self) -> None:
        self.handles: dict[str, ZygoteHandle] = {}
        self.swept = False

    def socket_for(self, job: dict[str, Any]) -> str | None:
        """A live zygote's socket for `job`'s sandboxes; None when none could be started (the judge's runner
        then starts its own and the job still runs)."""
        from worker.engine.manifest import load_assignment
        from worker.engine.runners import make_runner
        from worker.engine.runners.base import SandboxSpec

        key = _pool_key(job)
        handle = self.handles.pop(key, None)
        try:
            if handle is not None and not handle.alive():
                handle.stop()
                handle = None
            if handle is None:
                runner = make_runner(job["runner"], **job.get("runner_options", {}))
                if job["runner"] == "docker" and not self.swept:
                    from worker.engine.runners.docker_zygote import remove_orphaned_zygotes

                    self.swept = True
                    remove_orphaned_zygotes()  # left by a worker of this host that was killed outright
                assignment = load_assignment(Path(job["assignment_path"]))
                handle = runner.start_zygote(SandboxSpec(limits=assignment.limits, gpu=bool(job.get("gpu"))))
            handle.wait_ready()
        except Exception as exc:
            print(f"judge zygote: no sandbox zygote: {exc}", file=sys.stderr)
            return None
        self.handles[key] = handle  # most recent last
        while len(self.handles) > self.KEEP:
            self.handles.pop(next(iter(self.handles))).stop()
        return handle.socket_path

    def stop(self) -> None:
        """Stop every zygote (their children die with them)."""
        handles, self.handles = list(self.handles.values()), {}
        for handle in handles:
            handle.stop()


def _leave_control(control: Any) -> None:
    """In a process forked from here: default signal handling, and neither the control pipe nor the jobs' input."""
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    control.close()
    # Not os.close(0): the next socket or pipe would get fd 0, which pytest's capture replaces during tests.
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)


def _run_collected(collected: CollectedJudges, job: dict[str, Any], control: Any) -> bool:
    """Judge `job` in a fork of the judge that collected its tests; False when none could take it."""
    judge = collected.for_job(job)
    if judge is None:
        return False
    started: list[int] = []

    def report(pid: int) -> None:
        started.append(pid)
        control.write(json.dumps({"started": pid}) + "\n")

    status = judge.run(job, report)
    if not started:
        return False  # it died before forking: a judge of the job's own runs it instead
    control.write(json.dumps({"done": started[0], "status": status}) + "\n")
    return True


def _child(job: dict[str, Any], warm: list[Sandbox], control: Any) -> None:
    """In the forked judge: run the job, write its verdicts, leave without running the zygote's exit hooks."""
    from worker.engine.judge.main import run_job, write_verdicts

    try:
        write_verdicts(job, run_job(job, warm=warm))
    finally:
        sys.stderr.flush()
        os._exit(0)


def zygote_main() -> None:
    """Serve jobs until stdin closes."""
    control = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # pytest and friends print; only control lines may reach the parent
    import pytest  # noqa: F401  (imported once here, so every forked judge starts with it)
    import torch

    import worker.engine.judge.plugin
    import worker.engine.judge.proxy  # noqa: F401
    from worker.sandbox import forkready

    probe = torch.ones(2, requires_grad=True)
    (probe * probe).sum().backward()  # autograd's lazy set-up happens once, before any fork
    forkready.settle()  # a judge forked from here neither walks nor copies what exists now
    pool: dict[str, list[Sandbox]] = {}
    zygotes = SandboxZygotes()
    collected = CollectedJudges(close_in_child=lambda: _leave_control(control))

    def release() -> None:
        """Stop every sandbox and zygote this process holds."""
        collected.stop()
        for sandboxes in pool.values():
            for sandbox in sandboxes:
                sandbox.stop()
        zygotes.stop()

    def stop(signum: int, _frame: object) -> None:
        # A worker stopped any way but SIGKILL removes its sandboxes; after SIGKILL, the zygotes' lifelines
        # close and they remove themselves.
        release()
        os._exit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop)
    control.write(json.dumps({"ready": os.getpid()}) + "\n")
    try:
        for line in sys.stdin:
            job = json.loads(line)
            key = _pool_key(job)
            forking = job.get("runner_options", {}).get("sandbox") == "fork"
            if forking and not job["runner_options"].get("zygote"):
                path = zygotes.socket_for(job)
                if path is not None:
                    job = {**job, "runner_options": {**job["runner_options"], "zygote": path}}
            if forking and _run_collected(collected, job, control):
                continue
            warm = pool.pop(key, [])
            for others in pool.values():  # keep only the sandboxes that the latest kind of job needs
                for other in others:
                    other.stop()
            pool.clear()
            pid = os.fork()
            if pid == 0:
                collected.close_in_child()
                _child(job, warm, control)
            for sandbox in warm:
                sandbox.release()
            control.write(json.dumps({"started": pid}) + "\n")
            # Started while the judge works, ready for the next submission of this kind (a zygote's children
            # start in milliseconds: nothing to start ahead for those).
            fresh = None if forking else _prepare(job)
            if fresh is not None:
                pool[key] = [fresh]
            _, status = os.waitpid(pid, 0)
            for sandbox in warm:
                sandbox.stop()  # whatever the judge left running (it was killed, say) goes now
            control.write(json.dumps({"done": pid, "status": status}) + "\n")
    except BrokenPipeError:
        pass  # the owner went away mid-job: stop as at the end of its input
    release()
