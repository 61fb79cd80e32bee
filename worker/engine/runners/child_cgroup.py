"""A cgroup of its own for each child of a sandbox zygote: memory (no swap), pids and CPU, made by the host.

A zygote container is one memory and pids cgroup, while a child's limits are rlimits per process: without more, a
child that forks many processes, each under its limits, fills the container, and the kernel then kills the largest
process there, which may be another slot's child (or another's fork fails for want of pids). So, where the host
lets this process write cgroup v1's memory and pids hierarchies (a worker that runs as root on a cgroup v1 host),
each child leased from a zygote is moved, before the judge sends it a byte of the student's, into cgroups of its
own below the container's, limited to one slot's share (`ChildCgroup.join`): one child's processes can fill only
those. Then every slot of a worker forks from one zygote container, which shares its warmed heap with all of them.
Where the CPU hierarchy is writable too, each child also gets a CPU cgroup of its own, with the assignment's
`cpus` as its quota, as a fresh container's `--cpus` gives it: one child cannot have more than a slot's CPUs, and
the slots share the CPUs equally however many processes each runs; the container's own quota is every slot's.
Elsewhere (cgroup v2, or no write access) each slot gets a zygote container of its own instead
(`worker/engine/judge/sandboxes.py`).

Nothing the zygote says decides which cgroup is written: the container's cgroups are read from the host's /proc at
the container's start and kept in a file beside its socket folder, in a folder only this host's worker can write
(`write_record`); the child's processes are those of that container whose pid there is the one the zygote named,
and their descendants. A subverted zygote could name another process of its own container, nothing else.

Memory already charged stays where it was (the zygote's pages, which the children share); what a child's
processes touch after the move, they pay for themselves.

A local zygote (the local runner, on a host without Docker) gets the same, where the host allows it: a memory and
pids cgroup of its own below this process's, sized as a zygote container would be (`LocalCgroup`), and a record
that says so. Without it, a child's processes, each under its own limits, could fill the host's memory. A fresh
local sandbox (the local runner's parity baseline) gets cgroups of its own below this process's too, sized as one
zygote child's (`child_limits`), which its first process enters before it execs anything.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import math
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from worker.sandbox.globalstate import MAX_PARKED, PARK_GROWTH_BYTES

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from worker.engine.runners.base import SandboxSpec

CONTROLLERS = ("memory", "pids")  # what a child's cgroups need
CPU = "cpu"  # what they get besides, where the host has it: a CPU quota and an equal share
FOUND = (*CONTROLLERS, CPU)
RECORD = "cgroups.json"  # in a zygote's host folder: the container's cgroup folders, one per controller
PREFIX = "grader-child-"
ZYGOTE_PREFIX = "grader-zygote-"  # a local zygote's own cgroups, below the worker's
FRESH_PREFIX = "grader-fresh-"  # a fresh local sandbox's, below its judge's

# The zygote and its idle pre-forked children share pages with the working children. Per slot: the assignment's
# memory limit, plus room for the child's tmpfs, its idle successor and its parked test processes (at most
# globalstate.MAX_PARKED, each under PARK_GROWTH_BYTES + PARKED_COPIED_MB: `worker/sandbox/globalstate.py`);
# once: the zygote. So each child has its limit itself (its rlimits stop it before the cgroup does), whatever the
# other slots' children do.
ZYGOTE_MEMORY_MB = 512
PARKED_COPIED_MB = 16  # pages a parked test process copied from the post-import process (~5-10 MB measured)
PARKED_MEMORY_MB = MAX_PARKED * ((PARK_GROWTH_BYTES >> 20) + PARKED_COPIED_MB)
SLOT_MEMORY_MB = 256 + PARKED_MEMORY_MB


def child_pids(spec: SandboxSpec) -> int:
    """The processes one slot's children may have together: a working child's (its student processes, the
    server, its post-import and parked test processes) and its idle successor's."""
    return 2 * spec.limits.pids + 16


def zygote_limits(spec: SandboxSpec) -> tuple[int, int, float]:
    """What a zygote for `spec` (its slots) may hold with all its children: MiB of memory, processes (per slot a
    working and an idle child, and the zygote with its waiters), and CPUs (each slot's: its children's quota)."""
    return (spec.slots * (spec.limits.memory_mb + SLOT_MEMORY_MB) + ZYGOTE_MEMORY_MB,
            spec.slots * child_pids(spec) + 32, spec.slots * spec.limits.cpus)


def mounts(mountinfo: str = "/proc/self/mountinfo") -> dict[str, str]:
    """Where cgroup v1's memory, pids and CPU hierarchies are mounted here, for those that are."""
    found: dict[str, str] = {}
    try:
        lines = Path(mountinfo).read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        fields = line.split()
        if " - cgroup " not in line or len(fields) < 5:
            continue
        options = line.rsplit(" ", 1)[-1].split(",")
        for controller in FOUND:
            if controller in options and fields[3] == "/":
                found.setdefault(controller, fields[4])
    return found


def possible() -> bool:
    """Whether this process can give children cgroups of their own (cgroup v1 memory and pids, writable)."""
    found = mounts()
    return all(c in found and os.access(found[c], os.W_OK) for c in CONTROLLERS)


def named_dirs(cgroup_text: str) -> dict[str, str]:
    """The folders here, per controller (memory, pids, CPU, where its hierarchy is mounted), of the cgroups that a
    process's /proc/PID/cgroup text names."""
    found = mounts()
    dirs: dict[str, str] = {}
    for line in cgroup_text.splitlines():
        _, names, path = line.split(":", 2)
        for controller in FOUND:
            if controller in names.split(",") and controller in found:
                dirs[controller] = os.path.join(found[controller], path.lstrip("/"))
    return dirs


def container_dirs(pid: int) -> dict[str, str]:
    """The cgroup folders, per controller, of the process with host pid `pid` (a container's first process):
    memory and pids, and CPU where its hierarchy is mounted and writable here."""
    dirs = named_dirs(Path(f"/proc/{pid}/cgroup").read_text())
    if CPU in dirs and not os.access(dirs[CPU], os.W_OK):
        del dirs[CPU]  # optional: the children go without a CPU quota of their own
    if not set(CONTROLLERS) <= set(dirs) or not all(os.path.isdir(d) for d in dirs.values()):
        raise OSError(errno.ENOENT, f"no cgroup v1 memory and pids folders for process {pid}: {dirs}")
    return dirs


@dataclass(frozen=True)
class Record:
    """What the host knows of a zygote's children's cgroups: its container's (or its own) folders, each child's
    limits (`cpus`: its CPU quota, where `parents` has a CPU folder; 0 for none), and at which level of a process's
    NSpid the zygote's pid for it is (1: a container's namespace; 0: a local zygote's, this process's own)."""

    parents: dict[str, str]
    memory_mb: int
    pids: int
    level: int = 1
    cpus: float = 0.0


def child_limits(spec: SandboxSpec) -> tuple[int, int, float]:
    """One slot's share, what each child's cgroups (or a fresh local sandbox's) hold: MiB of memory (the
    assignment's limit and the slot's room beside it), processes (`child_pids`) and CPUs (the assignment's)."""
    return spec.limits.memory_mb + SLOT_MEMORY_MB, child_pids(spec), spec.limits.cpus


def slot_record(parents: dict[str, str], spec: SandboxSpec, level: int = 1) -> Record:
    """The record of a zygote for `spec` whose children's cgroups go below `parents`: each child one slot's
    share (`child_limits`)."""
    memory_mb, pids, cpus = child_limits(spec)
    return Record(parents, memory_mb, pids, level, cpus)


def write_record(folder: Path, record: Record) -> None:
    """Keep a zygote container's record beside its socket folder (`read_record`)."""
    (folder / RECORD).write_text(json.dumps(dataclasses.asdict(record)))


def read_record(socket_path: str) -> Record | None:
    """The record of the zygote container whose socket is `socket_path`, or None where its children get no
    cgroups of their own (a local zygote, a host that does not allow it)."""
    try:
        data = json.loads((Path(socket_path).parent.parent / RECORD).read_text())
        record = Record(dict(data["parents"]), int(data["memory_mb"]), int(data["pids"]), int(data.get("level", 1)),
                        float(data.get("cpus", 0.0)))
    except (OSError, ValueError, TypeError, KeyError):
        return None
    fits = set(CONTROLLERS) <= set(record.parents) <= set(FOUND) and math.isfinite(record.cpus) and record.cpus >= 0
    return record if fits else None


class ChildCgroup:
    """The cgroups of one leased child, below its container's; removed by `remove()` once the child is gone."""

    def __init__(self, record: Record) -> None:
        # The judge's pid (the keeper's sweep asks whether it lives) and a token: a pid reused before a sweep
        # must not meet the folders its last holder left.
        self.owner = os.getpid()  # who made them, and so removes them
        name = f"{PREFIX}{self.owner}-{secrets.token_hex(4)}"
        self.dirs = {c: os.path.join(parent, name) for c, parent in record.parents.items()}
        self.parents = record.parents
        self.level = record.level
        _make(self.dirs, record.memory_mb, record.pids, record.cpus)

    def join(self, ns_pid: int) -> list[int]:
        """Move the child whose pid in its container is `ns_pid`, with every process below it, into these cgroups;
        the host pids moved. Call it before the child runs anything of the student's (it then starts no process
        of its own, so none can escape the move)."""
        pids = _tree(self.parents["memory"], ns_pid, self.level)
        if not pids:
            raise OSError(errno.ESRCH, f"no process {ns_pid} in the zygote's cgroup")
        for path in self.dirs.values():
            for pid in pids:
                _write(f"{path}/cgroup.procs", str(pid))
        return pids

    def remove(self, wait: float = 1.0) -> bool:
        """Remove the cgroups once their processes are gone (waiting up to `wait` s); whether they are gone."""
        return _remove_all(list(self.dirs.values()), wait)


class LocalCgroup:
    """Memory, pids (and CPU) cgroups below this process's own, for a local process and all it starts: a local
    zygote (ZYGOTE_PREFIX; the parents of its children's cgroups, `Record` level 0) or a fresh local sandbox
    (FRESH_PREFIX). `remove()` once its processes are gone."""

    def __init__(self, memory_mb: int, pids: int, cpus: float, prefix: str = ZYGOTE_PREFIX) -> None:
        own = container_dirs(os.getpid())
        sweep(own, prefix)  # those a worker or a judge killed outright left behind
        name = f"{prefix}{os.getpid()}-{secrets.token_hex(4)}"
        self.dirs = {c: os.path.join(parent, name) for c, parent in own.items()}
        _make(self.dirs, memory_mb, pids, cpus)

    def move(self, pid: int) -> None:
        """Move process `pid` into these cgroups: a zygote just started, before it forks (its children then start
        here, and each leased one moves on into cgroups of its own), or (in a child before it execs, with its own
        pid) a fresh sandbox's first process, so that nothing it starts is ever outside them."""
        for path in self.dirs.values():
            _write(f"{path}/cgroup.procs", str(pid))

    def remove(self, wait: float = 5.0) -> bool:
        """Remove these cgroups and those of children left in them, once their processes are gone (waiting up to
        `wait` s: the kernel frees a cgroup a moment after its last process); whether they are gone."""
        return _remove_all(list(self.dirs.values()), wait)


def local_cgroup(limits: tuple[int, int, float], prefix: str, what: str) -> LocalCgroup | None:
    """`LocalCgroup(*limits, prefix)` for `what` (a local zygote, a fresh local sandbox), where this host lets this
    process make it; None where not (its processes' rlimits alone bound them then)."""
    if not possible():
        return None
    try:
        return LocalCgroup(*limits, prefix=prefix)
    except OSError as exc:  # e.g. its own cgroup is not writable where the hierarchy's root is
        log.warning("%s: no cgroups of its own (%s); its processes' rlimits alone bound them", what, exc)
        return None


def _remove_all(paths: list[str], wait: float) -> bool:
    """Remove cgroup folders `paths` (and any below them), retrying for up to `wait` s while processes are still
    leaving them; whether they are all gone."""
    deadline = time.monotonic() + wait
    left = paths
    while left:
        left = [path for path in left if not _remove_tree(path)]
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.005)
    return not left


def _remove_tree(path: str) -> bool:
    """Remove cgroup folder `path` and the folders below it, where no process is left in them."""
    try:
        names = [entry.name for entry in os.scandir(path) if entry.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return True
    except OSError:
        names = []
    for name in names:
        _remove_tree(os.path.join(path, name))
    return _rmdir(path)


def _make(dirs: dict[str, str], memory_mb: int, pids: int, cpus: float) -> None:
    """Make cgroup folders `dirs` (one per controller), limited to `memory_mb` of memory and no swap, `pids`
    processes and (where `dirs` has a CPU folder and `cpus` is set) `cpus` CPUs; none are left where that fails."""
    made: list[str] = []
    try:
        for path in dirs.values():
            os.mkdir(path, 0o755)
            made.append(path)
        limit = str(memory_mb << 20)
        memory = dirs["memory"]
        _write(f"{memory}/memory.limit_in_bytes", limit)
        if os.path.exists(f"{memory}/memory.memsw.limit_in_bytes"):  # no swap either (where swap is counted)
            _write(f"{memory}/memory.memsw.limit_in_bytes", limit)
        try:
            _write(f"{memory}/memory.swappiness", "0")
        except OSError:  # some kernels take it only at the root: the memsw limit is what counts
            pass
        _write(f"{dirs['pids']}/pids.max", str(pids))
        if CPU in dirs and cpus > 0:
            # A quota per period, as `docker run --cpus` sets it; the share stays the default, equal for all.
            period = int(Path(f"{dirs[CPU]}/cpu.cfs_period_us").read_text())
            _write(f"{dirs[CPU]}/cpu.cfs_quota_us", str(max(1000, round(cpus * period))))
    except OSError:
        for path in reversed(made):
            _rmdir(path)
        raise


def sweep(parents: dict[str, str], prefix: str = PREFIX) -> int:
    """Remove the cgroups named `prefix` below `parents` whose maker is gone, with those inside them: children's
    (PREFIX) whose judge was killed before it removed them, local zygotes' (ZYGOTE_PREFIX) whose worker was
    killed outright, fresh local sandboxes' (FRESH_PREFIX) whose judge was; the number removed."""
    removed = 0
    for parent in parents.values():
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for name in names:
            owner = name[len(prefix):].split("-", 1)[0]
            if name.startswith(prefix) and owner.isdigit() and not pid_alive(int(owner)):
                removed += _remove_tree(os.path.join(parent, name))
    return removed


def _tree(parent: str, ns_pid: int, level: int = 1) -> list[int]:
    """Host pids of the process whose pid in its zygote's namespace (entry `level` of its NSpid, read from the
    host's pid namespace: 1 for a container's) is `ns_pid`, among the processes of cgroup folder `parent`, and of
    every process below it there."""
    parents: dict[int, int] = {}
    root = None
    for text in Path(f"{parent}/cgroup.procs").read_text().split():
        pid = int(text)
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        nspids = fields.get("NSpid", "").split()
        parents[pid] = int(fields.get("PPid", "0").strip() or 0)
        if len(nspids) > level and nspids[level] == str(ns_pid):
            root = pid
    if root is None:
        return []
    tree, grew = [root], True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in tree and pid not in tree:
                tree.append(pid)
                grew = True
    return tree


def oom_kills(memory_dir: str) -> int | None:
    """How many processes of memory cgroup `memory_dir` (and of the cgroups below it) the kernel's OOM killer has
    killed, whichever limit it enforced: cgroup v1's `memory.oom_control` (kernel 4.13 on) or v2's
    `memory.events`. None where neither says. The kernel counts a kill before it sends the SIGKILL, so a parent
    that has reaped the victim reads it counted."""
    for name in ("memory.oom_control", "memory.events"):
        try:
            text = Path(memory_dir, name).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
    return None


def _write(path: str, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


def _rmdir(path: str) -> bool:
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def pid_alive(pid: int) -> bool:
    """Whether a process `pid` exists (ours or not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True
