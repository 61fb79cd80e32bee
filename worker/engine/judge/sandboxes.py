"""Who owns a host's sandbox zygotes: started on a judge zygote's first job of a kind, kept while in use.

A judge zygote without a judge master owns its own (`SandboxZygotes()`, one slot each); the judge master's keeper
owns them for all the worker's slots (`SandboxZygotes(slots)`), and a judge zygote forked from the master asks
it (`worker.engine.judge.master.KeeperClient`). Either way the judge zygote sees a `SandboxSource`.

A Docker zygote's container is one memory and pids cgroup, and a child's limits are rlimits per process: a child
that forks many processes, each under its limits, could fill the container until the kernel kills its largest
process, which may be another child's. Where the host allows it, each child gets cgroups of its own below the
container's (`worker/engine/runners/child_cgroup.py`), and one Docker zygote serves all the slots, sharing its
warmed heap with every child; elsewhere the keeper gives each slot a Docker zygote of its own (its holder: the
judge zygote that asks). A local zygote serves all the slots.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Protocol

from worker.engine.runners.child_cgroup import pid_alive
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
    """The sandbox zygotes (containers or processes) this process owns: for each kind of sandbox, one for all
    `slots` gradings at once, or one per slot where the runner is Docker and its children cannot have cgroups of
    their own; the two most recently used kinds kept.
    Their children are the sandboxes of every job forked from the judge zygotes they serve (a judge zygote's
    own, or the judge master's keeper's for all)."""

    KEEP = 2

    def __init__(self, slots: int = 1) -> None:
        self.handles: dict[tuple[str, int], ZygoteHandle] = {}  # by kind and slot; most recent kind last
        self.holders: dict[int, int] = {}  # a judge zygote's pid: its slot
        self.swept = False
        self.slots = slots

    def slot_of(self, holder: int | None) -> int:
        """The slot of the judge zygote `holder`: the one it had, else the lowest that no living holder has."""
        if holder is None or self.slots == 1:
            return 0
        if holder not in self.holders:
            for pid in [pid for pid in self.holders if not pid_alive(pid)]:
                del self.holders[pid]
            taken = set(self.holders.values())
            free = [slot for slot in range(self.slots) if slot not in taken]
            # More holders than slots (one that went and left its pid to another process): share the least held.
            self.holders[holder] = free[0] if free else min(range(self.slots),
                                                             key=list(self.holders.values()).count)
        return self.holders[holder]

    def socket_for(self, job: dict[str, Any], holder: int | None = None) -> str | None:
        """A live zygote's socket for `job`'s sandboxes (for `holder`'s slot where each slot has its own); None
        when none could be started (the judge's runner then starts its own and the job still runs)."""
        from worker.engine.manifest import load_assignment
        from worker.engine.runners import child_cgroup, make_runner
        from worker.engine.runners.base import SandboxSpec

        kind = pool_key(job)
        own = job["runner"] == "docker" and self.slots > 1 and not child_cgroup.possible()
        key = (kind, self.slot_of(holder) if own else 0)
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
                                                         slots=1 if own else self.slots))
            handle.wait_ready()
            record = child_cgroup.read_record(handle.socket_path)
            if record is not None:
                child_cgroup.sweep(record.parents)  # children's cgroups that a judge killed outright left behind
        except Exception as exc:
            print(f"judge zygote: no sandbox zygote: {exc}", file=sys.stderr)
            return None
        self.handles[key] = handle  # most recent last
        kinds = list(dict.fromkeys(kind for kind, _ in reversed(self.handles)))  # most recently used first
        for old in kinds[self.KEEP:]:
            for stale in [k for k in self.handles if k[0] == old]:
                self.handles.pop(stale).stop()
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
