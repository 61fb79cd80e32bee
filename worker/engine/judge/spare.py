"""The child a collecting judge leases ahead for its next job, so that taking a sandbox is off the job's path.

Leasing a zygote's child is quick, but moving it into cgroups of its own is not: each write to a v1 `cgroup.procs`
waits for an RCU grace period (~10 ms of wall time per child, no CPU: docs/performance.md). A collecting judge
(`worker.engine.judge.collected`) therefore leases the next job's child as soon as a job ends and hands it to the
next job's judge, which it forks: that judge's first call finds its sandbox confined and answering. A spare is a
child like any other: it has run nothing of anyone's and serves one submission only; one that died meanwhile (its
zygote restarted, say) is dropped and the judge takes a child of its own, as without a spare.

Each collecting judge of a slot keeps one (the judge zygote keeps three, for the assignments it served last): a slot
that alternates between two assignments' jobs, as at two courses' deadlines, finds a child ahead for each, where
dropping the other assignment's would have cost every job a lease for nobody. One idle child is a few MB.

The collecting judge made the spare's cgroups, so it removes them, once the job's judge has exited (`Spare.done`):
their removal waits for the child's processes to be torn down, and that wait is off the job's path too.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from worker.engine.errors import InfrastructureError
from worker.engine.manifest import Limits
from worker.engine.runners import forked
from worker.engine.runners.child_cgroup import ChildCgroup


class Spare:
    """At most one leased child, for the next job whose sandbox comes from the same zygote."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.sandbox: forked.ForkedSandbox | None = None
        self._for: str | None = None  # the kind of job it serves: `kind(job)`
        self._handed: list[ChildCgroup] = []  # cgroups of spares handed to judges: removed after them

    def lease(self, job: dict[str, Any]) -> None:
        """Lease a child for the next job like `job` now (nothing where its sandboxes are not a zygote's
        children, or where one is leased already); a failure only means the next judge takes its own."""
        options = job.get("runner_options", {})
        if self.sandbox is not None or options.get("sandbox") != "fork" or not options.get("zygote"):
            return
        try:
            self.sandbox = forked.spawn(options["zygote"], self.limits)
            self._for = kind(job)
        except InfrastructureError as exc:
            print(f"collecting judge: no child leased ahead: {exc}", file=sys.stderr)

    def take(self, job: dict[str, Any]) -> list[forked.ForkedSandbox]:
        """The spare for `job` (as the `warm` sandboxes of `worker.engine.judge.main.open_job`), if it fits and
        lives; a spare that does not is stopped."""
        sandbox, self.sandbox = self.sandbox, None
        if sandbox is None:
            return []
        if self._for != kind(job) or sandbox.exit_info().state != "running":
            sandbox.stop()
            return []
        return [sandbox]

    def handed(self, sandboxes: list[forked.ForkedSandbox]) -> None:
        """In the collecting judge, once the job's judge is forked: let go of the spare handed to it (its lease
        then ends with that judge), keeping its cgroups to remove."""
        for sandbox in sandboxes:
            sandbox.release()
            if sandbox.cgroup is not None:
                self._handed.append(sandbox.cgroup)

    def done(self) -> None:
        """After the job's judge exited: remove the cgroups of the spares handed to judges (a folder whose
        processes are not gone yet stays for the next job's turn)."""
        self._handed = [cgroup for cgroup in self._handed if not cgroup.remove(wait=1.0)]

    def drop(self) -> None:
        """Stop the spare (its collecting judge is leaving) and remove what is left."""
        if self.sandbox is not None:
            self.sandbox.stop()
            self.sandbox = None
        self.done()


def kind(job: dict[str, Any]) -> str:
    """Jobs that one spare can serve: the same runner, runner options (the zygote's socket among them) and GPU."""
    return json.dumps([job.get("runner"), job.get("runner_options", {}), bool(job.get("gpu"))], sort_keys=True)
