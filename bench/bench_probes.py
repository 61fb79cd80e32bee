"""What the service benchmark reads off a running service: each worker slot's processes and zygote containers,
their memory (PSS), and the counts whose growth it checks (fds, processes, mounts, namespaces, cgroups)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_rush import Service

GROWTH_KEYS = ("fds", "processes", "mounts", "netns", "cgroups", "containers")


# --- processes, containers, resources of the slots ----------------------------------------------------------
PF_KTHREAD = 0x00200000
TICK = float(os.sysconf("SC_CLK_TCK"))


@dataclass(frozen=True)
class Proc:
    """One process as /proc/PID/stat shows it."""

    pid: int
    ppid: int
    comm: str
    kernel: bool
    cpu: float  # seconds: its own and its reaped children's


def read_procs() -> dict[int, Proc]:
    """Every process now."""
    procs = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            head, _, tail = Path(f"/proc/{entry}/stat").read_text().rpartition(")")
            fields = tail.split()
            # After "(comm)": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
            procs[int(entry)] = Proc(pid=int(entry), ppid=int(fields[1]), comm=head.partition("(")[2],
                                     kernel=bool(int(fields[6]) & PF_KTHREAD),
                                     cpu=sum(int(v) for v in fields[11:15]) / TICK)
        except (OSError, IndexError, ValueError):
            continue
    return procs


def _ppids() -> dict[int, int]:
    return {proc.pid: proc.ppid for proc in read_procs().values()}


def process_tree(root: int, parents: dict[int, int] | None = None) -> list[int]:
    """`root` and every descendant of it now."""
    parents = parents if parents is not None else _ppids()
    kids: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        kids.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in parents or pid == root:
            found.append(pid)
            todo.extend(kids.get(pid, []))
    return found


def zygote_containers() -> list[dict[str, Any]]:
    """Every grader zygote container on this host: id, owner pid (from its label), host pids of its processes."""
    from worker.engine.image import open_client
    from worker.engine.runners.docker_zygote import OWNER_LABEL, ROLE_LABEL

    client = open_client(None, timeout=60)
    try:
        found = []
        for container in client.containers.list(filters={"label": f"{ROLE_LABEL}=zygote"}):
            owner = container.labels.get(OWNER_LABEL, "")
            pid = owner.split(":")[1] if owner.count(":") >= 2 else ""
            try:
                top = container.top(ps_args="-eo pid")
                pids = [int(row[0]) for row in top.get("Processes") or []]
            except Exception:  # docker top refused: fall back on the container's cgroup
                pids = _cgroup_procs(int(container.attrs["State"]["Pid"]))
            found.append({"id": container.id, "owner": int(pid) if pid.isdigit() else 0, "pids": pids,
                          "init": int(container.attrs["State"]["Pid"])})
        return found
    finally:
        client.close()


def zygote_containers_per_worker(slots: int) -> int:
    """How many zygote containers a warm worker with `slots` slots holds (of one kind of sandbox): one for all,
    where each child gets cgroups of its own, else one per slot (`worker/engine/judge/sandboxes.py`)."""
    from worker.engine.runners import child_cgroup

    return 1 if child_cgroup.possible() else slots


def _child_cgroups(init: int) -> int:
    """How many children's cgroups there are below the zygote container whose first process is `init`."""
    from worker.engine.runners import child_cgroup

    try:
        parents = child_cgroup.container_dirs(init)
    except OSError:
        return 0
    return sum(name.startswith(child_cgroup.PREFIX) for parent in parents.values() for name in os.listdir(parent))


def zygote_throttling() -> dict[str, int]:
    """CFS bandwidth counters of every zygote container's CPU cgroup, summed: periods with work, periods in which
    the container ran out of its quota, and nanoseconds it was held back (cgroup v1 `cpu.stat`; zeros where it
    cannot be read). A container that shares its CPUs with its slots' children must not be throttled."""
    from worker.engine.runners import child_cgroup

    total = {"nr_periods": 0, "nr_throttled": 0, "throttled_time": 0}
    for container in zygote_containers():
        try:
            folder = child_cgroup.container_dirs(container["init"]).get(child_cgroup.CPU)
            lines = Path(f"{folder}/cpu.stat").read_text().splitlines() if folder else []
        except OSError:
            continue
        for line in lines:
            key, _, value = line.partition(" ")
            if key in total and value.strip().isdigit():
                total[key] += int(value)
    return total


def _cgroup_procs(pid: int) -> list[int]:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for root in (f"/sys/fs/cgroup/pids{path}", f"/sys/fs/cgroup{path}"):
            procs = Path(root) / "cgroup.procs"
            if ("pids" in controllers.split(",") or controllers == "") and procs.exists():
                return [int(p) for p in procs.read_text().split()]
    return [pid]


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def _link(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def pss_mb(pids: list[int]) -> float:
    """Sum of Pss over `pids` (from /proc/PID/smaps_rollup), in MB."""
    total_kb = 0
    for pid in pids:
        text = _read(f"/proc/{pid}/smaps_rollup") or ""
        for line in text.splitlines():
            if line.startswith("Pss:"):
                total_kb += int(line.split()[1])
                break
    return total_kb / 1024


@dataclass
class Slot:
    """One worker slot now: its `grader worker` tree and its zygote container(s)."""

    worker: int
    tree: list[int]
    containers: list[dict[str, Any]]

    @property
    def pids(self) -> list[int]:
        """Every process of the slot, on the host and in its containers."""
        return sorted({*self.tree, *(p for c in self.containers for p in c["pids"])})


def slots(svc: Service) -> list[Slot]:
    """The service's slots: each worker's process tree and the zygote containers whose owner is in it."""
    parents = _ppids()
    containers = zygote_containers()
    found = []
    for child in svc.workers:
        tree = process_tree(child.process.pid, parents)
        found.append(Slot(child.process.pid, tree, [c for c in containers if c["owner"] in tree]))
    return found


def resources(svc: Service) -> dict[str, int]:
    """Counts of what the slots hold now (the figures whose growth the issue asks about)."""
    current = slots(svc)
    pids = [p for s in current for p in s.pids]
    fds = sum(len(os.listdir(f"/proc/{p}/fd")) for p in pids if os.path.isdir(f"/proc/{p}/fd"))
    # The host's mount namespace (the worker trees live in it) changes with everyone's containers: not counted.
    host_mnt = _link("/proc/self/ns/mnt")
    mount_namespaces: dict[str, int] = {}
    netns, cgroups = set(), set()
    for pid in pids:
        mnt = _link(f"/proc/{pid}/ns/mnt")
        if mnt and mnt != host_mnt and mnt not in mount_namespaces:
            mount_namespaces[mnt] = len((_read(f"/proc/{pid}/mountinfo") or "").splitlines())
        net = _link(f"/proc/{pid}/ns/net")
        if net:
            netns.add(net)
        cgroups.update((_read(f"/proc/{pid}/cgroup") or "").splitlines())
    machine_netns = {_link(f"/proc/{e}/ns/net") for e in os.listdir("/proc") if e.isdigit()} - {None}
    return {"fds": fds, "processes": len(pids), "mounts": sum(mount_namespaces.values()),
            "mount_namespaces": len(mount_namespaces), "netns": len(netns),
            # the cgroups the slots' processes are in, and any child's cgroups left empty below the containers
            "cgroups": len(cgroups) + sum(_child_cgroups(c["init"]) for s in current for c in s.containers),
            "containers": sum(len(s.containers) for s in current), "machine_netns": len(machine_netns)}


def steady(svc: Service, timeout: float = 15.0, like: dict[str, int] | None = None) -> dict[str, int]:
    """`resources()` once it holds still (two readings 0.5 s apart agree), or once nothing exceeds `like`."""
    deadline = time.monotonic() + timeout
    last = resources(svc)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = resources(svc)
        if like is not None and all(now[k] <= like[k] for k in GROWTH_KEYS):
            return now
        if like is None and all(now[k] == last[k] for k in GROWTH_KEYS):
            return now
        last = now
    return last


def memory(svc: Service) -> list[dict[str, Any]]:
    """PSS per slot (MB), one entry per worker: its tree, its containers, both together, each divided by the
    worker's slots (they share the tree's judge master and the containers)."""
    out = []
    for slot in slots(svc):
        container_pids = [p for c in slot.containers for p in c["pids"]]
        n = svc.slots
        out.append({"worker": slot.worker, "worker_mb": pss_mb(slot.tree) / n,
                    "container_mb": pss_mb(container_pids) / n, "total_mb": pss_mb(slot.pids) / n,
                    "processes": len(slot.pids), "containers": len(slot.containers), "slots": n})
    return out
