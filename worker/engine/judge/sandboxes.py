"""Who owns a host's sandbox zygotes: started on a judge zygote's first job of a kind, kept while in use.

A judge zygote without a judge master owns its own (`SandboxZygotes()`, one slot each); the judge master's keeper
owns them for all the worker's slots (`SandboxZygotes(slots)`), and a judge zygote forked from the master asks
it (`worker.engine.judge.master.KeeperClient`). Either way the judge zygote sees a `SandboxSource`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Protocol

from worker.engine.runners.forked import ZygoteHandle

# What of a job decides its kind of sandbox: all a sandbox zygote's owner needs to see (not the submission's files).
SANDBOX_FIELDS = ("runner", "runner_options", "assignment_path", "gpu")


def sandbox_request(job: dict[str, Any]) -> dict[str, Any]:
    """The part of `job` that `SandboxZygotes.socket_for` reads."""
    return {key: job[key] for key in SANDBOX_FIELDS if key in job}


def pool_key(job: dict[str, Any]) -> str:
    """Jobs with the same key use the same kind of sandbox (which zygote serves them does not matter)."""
    options = {k: v for k, v in job.get("runner_options", {}).items() if k != "zygote"}
    return json.dumps([job["runner"], options, job["assignment_path"], job.get("gpu")], sort_keys=True)


class SandboxZygotes:
    """The sandbox zygotes (containers or processes) this process owns: one per kind of sandbox, the two most
    recently used kept, each sized for `slots` gradings at once. Their children are the sandboxes of every job
    forked from the judge zygotes they serve (a judge zygote's own, or the judge master's keeper's for all)."""

    KEEP = 2

    def __init__(self, slots: int = 1) -> None:
        self.handles: dict[str, ZygoteHandle] = {}
        self.swept = False
        self.slots = slots

    def socket_for(self, job: dict[str, Any]) -> str | None:
        """A live zygote's socket for `job`'s sandboxes; None when none could be started (the judge's runner
        then starts its own and the job still runs)."""
        from worker.engine.manifest import load_assignment
        from worker.engine.runners import make_runner
        from worker.engine.runners.base import SandboxSpec

        key = pool_key(job)
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
                handle = runner.start_zygote(SandboxSpec(limits=assignment.limits, gpu=bool(job.get("gpu")),
                                                         slots=self.slots))
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


class SandboxSource(Protocol):
    """Where a judge zygote gets a sandbox zygote's socket: its own `SandboxZygotes`, or the master's keeper."""

    def socket_for(self, job: dict[str, Any]) -> str | None: ...

    def stop(self) -> None: ...
