"""Which sandbox zygote serves which slot, and what a slot's child can take from another's: where the host allows
it each child has memory, pids and CPU cgroups of its own below one zygote shared by the slots (a Docker zygote's
container, or a local zygote's own cgroups), else each slot has a Docker zygote of its own; either way one slot's
submission cannot fill the memory or pids cgroup that another slot's sandbox lives in, nor take its CPUs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.sandbox_support import Probe, leftover_cgroups
from worker.engine.judge.sandboxes import SandboxZygotes
from worker.engine.manifest import Limits
from worker.engine.runners import child_cgroup
from worker.engine.runners.base import Runner, SandboxSpec
from worker.engine.runners.docker import DockerRunner
from worker.engine.runners.forked import ForkedSandbox
from worker.engine.runners.local import LocalRunner, namespace_mode

REPO = Path(__file__).resolve().parents[2]
# A grading job's sandbox request, as the keeper reads it: forked Docker sandboxes for the autograd assignment.
JOB = {"runner": "docker", "runner_options": {"sandbox": "fork"},
       "assignment_path": str(REPO / "reference_tests" / "autograd")}
KINDS = ["docker", "local"]  # the runner whose zygote the slots share


def job_for(kind: str) -> dict[str, object]:
    """JOB, on the runner `kind`."""
    return {**JOB, "runner": kind}


def runner_for(kind: str, zygote: str) -> Runner:
    """A runner of `kind` that forks its sandboxes from the zygote at socket `zygote`."""
    return DockerRunner(sandbox="fork", zygote=zygote) if kind == "docker" else LocalRunner(sandbox="fork",
                                                                                          zygote=zygote)


def skip_unless_ready(kind: str, docker_ready: bool) -> None:
    if kind == "docker" and not docker_ready:
        pytest.skip("no Docker engine here")
    if kind == "local" and namespace_mode() == "none":
        pytest.skip("this kernel gives the local runner no namespaces")

# Each process it forks stays under its own data limit (768 MiB); together they are far over the slot's share.
BOMB = textwrap.dedent('''
    import os, time
    KEEP = []

    def hold(mb):
        block = bytearray(mb << 20)
        block[::4096] = b"\\1" * len(block[::4096])
        KEEP.append(block)
        return sum(len(b) for b in KEEP) >> 20

    def forks(most):
        made = 0
        for _ in range(most):
            try:
                pid = os.fork()
            except OSError:
                break
            if pid == 0:
                time.sleep(600)
                os._exit(0)
            made += 1
        return made

    def bomb(processes, mb):
        for _ in range(processes):
            if os.fork() == 0:
                try:
                    hold(mb)
                except MemoryError:
                    pass
                time.sleep(600)
                os._exit(0)
            time.sleep(0.2)
        time.sleep(2)
        return processes
''')


@pytest.fixture
def holders() -> Iterator[list[int]]:
    """Two living processes standing in for two slots' judge zygotes (the keeper asks only whether they live)."""
    sleepers = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]) for _ in range(2)]
    yield [sleeper.pid for sleeper in sleepers]
    for sleeper in sleepers:
        sleeper.kill()
        sleeper.wait()


def test_each_judge_zygote_keeps_its_slot_and_a_gone_ones_slot_is_taken_again(holders: list[int]) -> None:
    """Does each holder keep the slot it was given, does a new holder get the slot of one that went, and do
    holders beyond the slots share the least held?"""
    zygotes = SandboxZygotes(2)
    first, second = holders
    assert [zygotes.slot_of(first), zygotes.slot_of(second), zygotes.slot_of(first)] == [0, 1, 0]
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    zygotes.holders[gone.pid] = zygotes.holders.pop(first)  # slot 0's holder went
    assert zygotes.slot_of(first) == 0
    assert zygotes.slot_of(1) in (0, 1)  # pid 1 lives: a third holder shares a slot
    assert SandboxZygotes(1).slot_of(first) == 0 and zygotes.slot_of(None) == 0


@pytest.mark.parametrize("kind", KINDS)
def test_one_slots_many_process_memory_bomb_leaves_the_other_slots_sandbox_working(
        holders: list[int], docker_ready: bool, kind: str) -> None:
    """A submission that forks processes, each under its own memory limit, until its memory cgroup is full: does
    the sandbox of the worker's other slot keep what it holds and go on answering, and did the bomb's processes
    together hold no more than one slot's share? (With one container for both slots, the kernel killed the other
    slot's sandbox, the largest process there; a local zygote's children once had no bound but the host's.) And does
    each sandbox's own count of OOM kills say which one the kernel's OOM killer took?"""
    skip_unless_ready(kind, docker_ready)
    zygotes = SandboxZygotes(2)
    runners: list[Runner] = []
    try:
        sockets = [zygotes.socket_for(job_for(kind), holder) for holder in holders]
        assert None not in sockets
        # One zygote for both slots where each child gets cgroups of its own (or a local zygote); else one each.
        assert (sockets[0] == sockets[1]) == (child_cgroup.possible() or kind == "local"), sockets
        assert zygotes.socket_for(job_for(kind), holders[0]) == sockets[0]
        runners = [runner_for(kind, path) for path in dict.fromkeys(sockets) if path]
        limits = Limits(memory_mb=768)
        victim, bomb = (Probe(runner, BOMB, limits) for runner in (runners * 2)[:2])
        assert victim.call("hold", 256) == 256
        try:
            bomb.call("bomb", 16, 200, timeout=120)
        except (EOFError, OSError):
            pass  # its own cgroup's OOM killer may take the post-import process too
        assert victim.call("hold", 16) == 272, "the other slot's sandbox lost its memory"
        assert victim.sandbox.exit_info().state == "running"
        if child_cgroup.possible():  # 3,200 MiB asked for: held at most the share, the rest refused or killed
            assert isinstance(bomb.sandbox, ForkedSandbox) and bomb.sandbox.cgroup is not None
            memory = Path(bomb.sandbox.cgroup.dirs["memory"])
            record = child_cgroup.read_record(str(sockets[1]))
            assert record is not None
            share = record.memory_mb << 20  # the assignment's limit and the slot's room beside it
            assert int((memory / "memory.limit_in_bytes").read_text()) == share
            assert share // 2 < int((memory / "memory.max_usage_in_bytes").read_text()) <= share
            # What the judge asks when a test's process dies of SIGKILL: the bomb's cgroup counted the kernel's
            # kills, and the other slot's none.
            assert (bomb.sandbox.oom_kills() or 0) >= 1 and victim.sandbox.oom_kills() == 0
        victim.stop()
        bomb.stop()
    finally:
        for runner in runners:
            runner.close()
        zygotes.stop()


@pytest.fixture(params=KINDS)
def shared(request: pytest.FixtureRequest, holders: list[int],
           docker_ready: bool) -> Iterator[tuple[SandboxZygotes, str, str]]:
    """The keeper of a worker with two slots, its one zygote's socket (a Docker or a local one, where children get
    cgroups of their own), and that runner kind."""
    skip_unless_ready(request.param, docker_ready)
    if not child_cgroup.possible():
        pytest.skip("this host gives no child cgroups of its own (not root, or not cgroup v1)")
    zygotes = SandboxZygotes(2)
    try:
        path = zygotes.socket_for(job_for(request.param), holders[0])
        assert path is not None and zygotes.socket_for(job_for(request.param), holders[1]) == path
        yield zygotes, path, request.param
    finally:
        zygotes.stop()


def test_each_forked_child_lives_in_cgroups_of_its_own_until_it_is_gone(
        shared: tuple[SandboxZygotes, str, str]) -> None:
    """Is a child moved into memory and pids cgroups of its own, limited to a slot's share, before it loads the
    student's file, do the processes it starts follow it there, and are the cgroups gone once it is?"""
    _, path, kind = shared
    record = child_cgroup.read_record(path)
    assert record is not None
    runner = runner_for(kind, path)
    try:
        probe = Probe(runner, BOMB, Limits(memory_mb=768))
        sandbox = probe.sandbox
        assert isinstance(sandbox, ForkedSandbox) and sandbox.cgroup is not None
        memory, pids = (Path(sandbox.cgroup.dirs[c]) for c in ("memory", "pids"))
        assert memory.parent == Path(record.parents["memory"]) and pids.parent == Path(record.parents["pids"])
        assert int((memory / "memory.limit_in_bytes").read_text()) == record.memory_mb << 20
        assert int((pids / "pids.max").read_text()) == record.pids
        before = len((pids / "cgroup.procs").read_text().split())
        assert before >= 1
        assert probe.call("forks", 3) == 3
        assert len((pids / "cgroup.procs").read_text().split()) == before + 3
        assert len((memory / "cgroup.procs").read_text().split()) == before + 3
        for pid in (pids / "cgroup.procs").read_text().split():  # on the host, each is in the child's cgroups
            lines = Path(f"/proc/{pid}/cgroup").read_text()
            assert f":{sandbox.cgroup.dirs['memory'].split('/memory', 1)[1]}" in lines
        probe.stop()
        assert not memory.exists() and not pids.exists()
        assert not any(Path(folder).exists() for folder in sandbox.cgroup.dirs.values())
    finally:
        runner.close()


def test_a_childs_processes_together_get_its_slots_cpus_and_the_zygote_every_slots(
        shared: tuple[SandboxZygotes, str, str]) -> None:
    """Is a child moved into a CPU cgroup of its own whose quota is the assignment's `cpus` (what a fresh
    container's --cpus gives it; the parity suite spins processes in it), while the zygote's CPU quota is every
    slot's (before, the zygote container that two slots share had one slot's CPU for both)?"""
    _, path, kind = shared
    record = child_cgroup.read_record(path)
    assert record is not None
    if child_cgroup.CPU not in record.parents:
        pytest.skip("this host's CPU hierarchy is not writable here")
    limits = Limits(memory_mb=768)
    assert record.cpus == limits.cpus
    period = int((Path(record.parents["cpu"]) / "cpu.cfs_period_us").read_text())
    assert int((Path(record.parents["cpu"]) / "cpu.cfs_quota_us").read_text()) == round(2 * limits.cpus * period)
    runner = runner_for(kind, path)
    try:
        probe = Probe(runner, BOMB, limits)
        sandbox = probe.sandbox
        assert isinstance(sandbox, ForkedSandbox) and sandbox.cgroup is not None
        cpu = Path(sandbox.cgroup.dirs["cpu"])
        assert cpu.parent == Path(record.parents["cpu"])
        assert int((cpu / "cpu.cfs_quota_us").read_text()) == round(limits.cpus * period)
        probe.stop()
        assert not cpu.exists()
    finally:
        runner.close()


def test_the_cgroups_a_killed_judge_left_go_at_the_keepers_next_sweep(
        shared: tuple[SandboxZygotes, str, str], holders: list[int]) -> None:
    """A judge killed outright leaves its child's cgroups (empty once the zygote has ended the child): does the
    keeper's next hand-out remove them, and leave those of a judge still alive?"""
    zygotes, path, kind = shared
    record = child_cgroup.read_record(path)
    assert record is not None
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = [Path(parent) / f"{child_cgroup.PREFIX}{dead.pid}-0" for parent in record.parents.values()]
    kept = [Path(parent) / f"{child_cgroup.PREFIX}{holders[1]}-0" for parent in record.parents.values()]
    for folder in left + kept:
        folder.mkdir()
    try:
        assert zygotes.socket_for(job_for(kind), holders[0]) == path
        assert not any(folder.exists() for folder in left)
        assert all(folder.exists() for folder in kept)
    finally:
        for folder in left + kept:
            if folder.exists():
                folder.rmdir()


def test_one_slots_fork_bomb_leaves_the_other_slots_sandbox_forking(
        shared: tuple[SandboxZygotes, str, str]) -> None:
    """A submission that forks until refused, in one zygote container shared by both slots: can the other
    slot's sandbox still start processes, and do both go on answering?"""
    _, path, kind = shared
    runner = runner_for(kind, path)
    try:
        limits = Limits(memory_mb=768)
        bomb, victim = Probe(runner, BOMB, limits), Probe(runner, BOMB, limits)
        assert 0 < bomb.call("forks", 10_000, timeout=120) <= limits.pids * 2 + 16
        assert victim.call("forks", 8) == 8
        assert bomb.call("hold", 1) == 1
        bomb.stop()
        victim.stop()
    finally:
        runner.close()


def test_a_record_only_the_worker_can_write_says_which_cgroups_a_child_gets(tmp_path: Path) -> None:
    """Is a zygote's cgroup record read only from the folder above its socket folder (which the container, whose
    socket folder is mounted into it, cannot write), and is anything malformed there no record at all?"""
    socket_dir = tmp_path / "sock"
    socket_dir.mkdir()
    socket = str(socket_dir / "zygote.sock")
    forged = child_cgroup.Record({"memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids"}, 1 << 20, 1 << 20)
    child_cgroup.write_record(socket_dir, forged)  # where the container could write: not read
    assert child_cgroup.read_record(socket) is None
    record = child_cgroup.Record({"memory": "/m/docker/x", "pids": "/p/docker/x"}, 1376, 144)
    child_cgroup.write_record(tmp_path, record)
    assert child_cgroup.read_record(socket) == record
    record = child_cgroup.Record({"memory": "/m/docker/x", "pids": "/p/docker/x", "cpu": "/c/docker/x"}, 1376, 144,
                                cpus=1.5)
    child_cgroup.write_record(tmp_path, record)
    assert child_cgroup.read_record(socket) == record
    for text in ("{", "[]", '{"parents": {"memory": "/m"}, "memory_mb": 1, "pids": 1}',
                 '{"parents": {"memory": "/m", "pids": "/p"}, "memory_mb": "lots", "pids": 1}',
                 '{"parents": {"memory": "/m", "pids": "/p", "devices": "/d"}, "memory_mb": 1, "pids": 1}',
                 '{"parents": {"memory": "/m", "pids": "/p", "cpu": "/c"}, "memory_mb": 1, "pids": 1, "cpus": -1}',
                 '{"parents": {"memory": "/m", "pids": "/p", "cpu": "/c"}, "memory_mb": 1, "pids": 1, "cpus": 1e999}'):
        (tmp_path / child_cgroup.RECORD).write_text(text)
        assert child_cgroup.read_record(socket) is None, text


def test_only_cgroup_v1_memory_pids_and_cpu_hierarchies_are_found(tmp_path: Path) -> None:
    """Are the memory, pids and CPU hierarchies found among a host's mounts (CPU alone or beside cpuacct), and
    nothing on a cgroup v2 host or in a hierarchy mounted below its root (a container's view)?"""
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
        "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
        "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
        "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
        "41 31 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n")
    assert child_cgroup.mounts(str(mountinfo)) == {"memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids",
                                                   "cpu": "/sys/fs/cgroup/cpu"}
    mountinfo.write_text("32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
                         "33 31 0:30 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset\n")
    assert child_cgroup.mounts(str(mountinfo)) == {"cpu": "/sys/fs/cgroup/cpu,cpuacct"}
    mountinfo.write_text("30 23 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n")
    assert child_cgroup.mounts(str(mountinfo)) == {}
    mountinfo.write_text("35 31 0:32 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n")
    assert child_cgroup.mounts(str(mountinfo)) == {}


def test_a_local_zygotes_cgroups_go_with_it_and_a_killed_workers_go_at_the_next_start() -> None:
    """Does a local zygote run in memory, pids and CPU cgroups of its own, sized for its slots, are they gone once it
    has stopped, and does the next local zygote's start remove those that a worker killed outright left behind
    (with its children's inside), and not a living worker's?"""
    if namespace_mode() == "none" or not child_cgroup.possible():
        pytest.skip("this host gives no cgroups of their own to a local zygote (not root, or not cgroup v1)")
    left, living = leftover_cgroups(child_cgroup.ZYGOTE_PREFIX)
    for folder in left:
        (folder / folder.name.replace(child_cgroup.ZYGOTE_PREFIX, child_cgroup.PREFIX)).mkdir()  # a child's, inside
    spec = SandboxSpec(limits=Limits(), slots=2)
    zygote = LocalRunner(sandbox="fork").start_zygote(spec)
    try:
        assert zygote.cgroup is not None
        assert not any(folder.exists() for folder in left) and all(folder.exists() for folder in living)
        memory, pids = (Path(zygote.cgroup.dirs[c]) for c in ("memory", "pids"))
        memory_mb, processes, cpus = child_cgroup.zygote_limits(spec)
        assert int((memory / "memory.limit_in_bytes").read_text()) == memory_mb << 20
        assert int((pids / "pids.max").read_text()) == processes
        if "cpu" in zygote.cgroup.dirs:
            cpu = Path(zygote.cgroup.dirs["cpu"])
            assert cpus == 2 * Limits().cpus
            assert int((cpu / "cpu.cfs_quota_us").read_text()) == round(
                cpus * int((cpu / "cpu.cfs_period_us").read_text()))
        assert str(zygote.proc.pid) in (memory / "cgroup.procs").read_text().split()
        zygote.wait_ready()
        record = child_cgroup.read_record(zygote.socket_path)
        assert record == child_cgroup.Record(zygote.cgroup.dirs, Limits().memory_mb + child_cgroup.SLOT_MEMORY_MB,
                                             child_cgroup.child_pids(spec), level=0, cpus=Limits().cpus)
    finally:
        zygote.stop()
        for folder in living:
            folder.rmdir()
    assert not any(Path(folder).exists() for folder in zygote.cgroup.dirs.values())
