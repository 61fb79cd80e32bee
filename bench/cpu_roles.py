"""Where a phase's machine CPU went, by role, read from /proc alone (no profiler, no privilege beyond reading it).

Each process's figure is its own CPU time plus what its reaped children used (`utime + stime + cutime + cstime`
in /proc/PID/stat). Summed over a role's processes at the start and at the end of a phase, the difference is what
the role used meanwhile, short-lived processes included: a process that ended in between is counted through the
parent that reaped it, and a test's process, a sandbox child, a job's judge are all reaped inside the tree that
forked them. A process belongs to the role of its nearest ancestor (or itself) that roots one:

* sandboxes: the zygote containers (their init, the zygote, its children, their tests' processes);
* judges: the workers' judge masters (keeper, judge zygotes, collecting judges, each job's judge);
* workers: the `grader worker` processes (Celery's main process and its pool: tasks, SQL, storage);
* beat: `grader beat`;
* API and client: this process (the Flask app takes the uploads in it; the benchmark's own polling too);
* then, by name: PostgreSQL, Redis, Docker (dockerd, containerd, shims), kernel threads (kdamond, kworkers).

What no process accounts for is the machine's busy time less the roles: "interrupts" (irq and softirq from
/proc/stat, where the kernel counts them apart), the rest "other": kernel threads that ended, processes
orphaned to the machine's init, and the gap between the kernel's per-CPU clock (/proc/stat) and its
per-process ones (measured here: the processes' counters cover ~94 % of the busy time of a grading loop, with
nothing else running). Per-process counters tick at 10 ms, so a role's figure is good to ~10 ms per process of
it over the phase: read them over a burst of a hundred submissions or more.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bench_probes import TICK, Proc, read_procs, zygote_containers
from bench_rush import Service

from tests.support.proctree import command

ROLES = ("sandboxes", "judges", "workers", "beat", "API and client", "PostgreSQL", "Redis", "Docker",
         "kernel threads")
# By name (/proc's comm, cut at 15 characters: a shim is "containerd-shim").
BY_NAME = {"postgres": "PostgreSQL", "redis-server": "Redis", "dockerd": "Docker", "containerd": "Docker",
           "containerd-shim": "Docker"}


def role_roots(svc: Service, procs: dict[int, Proc]) -> dict[int, str]:
    """The processes that root a role, and the role."""
    roots: dict[int, str] = {os.getpid(): "API and client"}
    workers = {worker.process.pid for worker in svc.workers}
    for child in svc.started:  # the workers, and beat
        roots[child.process.pid] = "workers" if child.process.pid in workers else "beat"
    for proc in procs.values():
        if roots.get(proc.ppid) == "workers" and "worker.engine.judge --master" in command(proc.pid):
            roots[proc.pid] = "judges"
    for container in zygote_containers():
        roots[int(container["init"])] = "sandboxes"
    return roots


def role_of(pid: int, procs: dict[int, Proc], roots: dict[int, str]) -> str | None:
    """The role of `pid`: its nearest ancestor's (or its own) that roots one, else by name; None: other."""
    seen = 0
    current: int | None = pid
    while current is not None and current > 0 and seen < 64:
        if current in roots:
            return roots[current]
        proc = procs.get(current)
        current = proc.ppid if proc is not None else None
        seen += 1
    proc = procs[pid]
    return "kernel threads" if proc.kernel else BY_NAME.get(proc.comm)


def snapshot(svc: Service) -> dict[str, float]:
    """CPU seconds so far, by role (see the module's docstring), the machine's interrupt time, and the processes
    no role claims by name ("other:NAME")."""
    procs = read_procs()
    roots = role_roots(svc, procs)
    totals = dict.fromkeys(ROLES, 0.0)
    for proc in procs.values():
        role = role_of(proc.pid, procs, roots) or f"other:{proc.comm}"
        totals[role] = totals.get(role, 0.0) + proc.cpu
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    totals["interrupts"] = (int(fields[5]) + int(fields[6])) / TICK  # irq, softirq
    return totals


def breakdown(before: dict[str, float], after: dict[str, float], machine_seconds: float,
              count: int) -> dict[str, Any]:
    """Milliseconds per submission by role over a phase (`count` submissions, `machine_seconds` of busy time),
    with "other" the machine's busy time no role accounts for, and `named_others`: the three processes (by name)
    that used most of it, where they lived through the phase."""
    scale = 1000 / max(1, count)
    per: dict[str, Any] = {role: (after[role] - before[role]) * scale for role in (*ROLES, "interrupts")}
    per["other"] = machine_seconds * scale - sum(per.values())
    others = {key.partition(":")[2]: (after[key] - before.get(key, after[key])) * scale
              for key in after if key.startswith("other:")}
    per["named_others"] = dict(sorted(others.items(), key=lambda kv: -kv[1])[:3])
    return per
