"""The judge zygote: a process that has imported torch and pytest once and forks a judge per job.

A worker's pool process gets one from the worker's judge master (`worker.engine.judge.master`), forked there,
or, without a master, starts one of its own. Each job's judge gets the socket of the sandbox zygote for its kind
of sandbox (from the master's keeper, or from zygotes this process owns: `worker.engine.judge.sandboxes`), and
its sandboxes are that zygote's forked children. Such a job's judge is forked from the
collecting judge of its assignment (`worker.engine.judge.collected`), itself a fork of this process that
collected the reference tests once; a job no collecting judge can take is judged in a direct fork of this one.
In the "fresh" sandbox mode it instead keeps a sandbox warm (started, server importing torch) for the next
job's runner and limits and hands it to the forked judge: a sandbox still serves exactly one submission, it
just starts before the submission comes.
Control protocol, one JSON object per line: job in on stdin (or the master's connection); `{"started": pid}` and
`{"done": pid, "status": n}` out on the original stdout (or that connection). The verdicts go to the file each
job names, as with a cold judge.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import IO, Any

from worker.engine.judge.collected import CollectedJudges
from worker.engine.judge.sandboxes import SandboxSource, SandboxZygotes, pool_key
from worker.engine.runners.base import Sandbox


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


def _leave_control(*streams: IO[Any]) -> None:
    """In a process forked from here: default signal handling, and neither the control stream nor the jobs'."""
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    for stream in streams:
        try:
            stream.close()
        except OSError:
            pass
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


def _child(job: dict[str, Any], warm: list[Sandbox]) -> None:
    """In the forked judge: run the job, write its verdicts, leave without running the zygote's exit hooks."""
    from worker.engine.judge.main import run_job, write_verdicts

    try:
        write_verdicts(job, run_job(job, warm=warm))
    finally:
        sys.stderr.flush()
        os._exit(0)


def warm_up() -> None:
    """Import what every judge needs and run autograd once, then settle: the state every judge is forked from.
    Standard output goes to stderr from here on (pytest and friends print; only control lines may reach the
    owner, on a descriptor of their own)."""
    os.dup2(2, 1)
    from worker.sandbox import forkready

    forkready.keep_cuda_uninitialised()
    import pytest  # noqa: F401  (imported once here, so every forked judge starts with it)
    import torch

    import worker.engine.judge.plugin
    import worker.engine.judge.proxy
    import worker.engine.manifest

    # Every job's judge makes its runner: imported here, not once per job (docker-py alone is ~10 MB and tens of
    # ms), and shared by every process forked from here. A host without docker-py uses the local runner only.
    try:
        import worker.engine.runners.docker
    except ImportError:
        pass
    import worker.engine.runners.local  # noqa: F401

    if not forkready.gpu_visible():
        probe = torch.ones(2, requires_grad=True)
        (probe * probe).sum().backward()  # autograd's lazy set-up happens once, before any fork
    forkready.settle()  # a judge forked from here neither walks nor copies what exists now
    forkready.check_cuda_in_a_fork()


def zygote_main() -> None:
    """A judge zygote of its own (no judge master): jobs on stdin, control lines on stdout, its own sandbox
    zygotes."""
    control = os.fdopen(os.dup(1), "w", buffering=1)
    warm_up()
    serve(sys.stdin, control, SandboxZygotes())


def serve(jobs: IO[str], control: IO[str], zygotes: SandboxSource, *close_in_child: IO[Any]) -> None:
    """Serve jobs (one JSON line each, from `jobs`) until that stream ends; stop `zygotes` and every sandbox held
    on the way out. `close_in_child`: the streams besides `control` that the processes forked here must not keep
    (standard input is replaced there in any case)."""
    pool: dict[str, list[Sandbox]] = {}

    def leave() -> None:
        _leave_control(control, *close_in_child)

    collected = CollectedJudges(close_in_child=leave)

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
        for line in jobs:
            job = json.loads(line)
            key = pool_key(job)
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
                _child(job, warm)
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
    except (BrokenPipeError, ConnectionResetError):
        pass  # the owner went away mid-job: stop as at the end of its input
    release()
