"""The Docker sandbox zygote: a sandbox container with exactly two extra privileges, and one that never outlives
the worker that owns it, however the worker is stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from worker.engine.manifest import Limits
from worker.engine.runners.base import SandboxSpec
from worker.engine.runners.child_cgroup import PARKED_MEMORY_MB, SLOT_MEMORY_MB, child_pids
from worker.engine.runners.docker import docker_available
from worker.engine.runners.docker_config import LABEL, MOBY_PROFILE, container_config, seccomp_profile
from worker.engine.runners.docker_zygote import ROLE_LABEL, ZYGOTE_EXTRA_SYSCALLS, zygote_config
from worker.sandbox.globalstate import MAX_PARKED, PARK_GROWTH_BYTES
from worker.sandbox.seccomp_filter import REFUSED

REPO = Path(__file__).resolve().parents[2]
engine = pytest.mark.skipif(not docker_available(), reason="no Docker engine answered")


def test_the_zygote_container_differs_from_a_sandbox_only_where_it_must() -> None:
    """Is the zygote's container a sandbox container (no network, read-only, no capabilities, uid 10001, no
    logs, limits), with only its seccomp profile, socket folder, lifeline, sizes and open-files limit changed?"""
    spec = SandboxSpec(limits=Limits(memory_mb=512, pids=32))
    sandbox = container_config("img", spec)
    zygote = zygote_config("img", spec, None, "/srv/socket")
    changed = {k for k in set(sandbox) | set(zygote) if sandbox.get(k) != zygote.get(k)}
    assert changed == {"name", "labels", "entrypoint", "mem_limit", "memswap_limit", "pids_limit", "security_opt",
                       "volumes", "detach", "auto_remove", "oom_score_adj", "ulimits"}, changed
    for key in ("network_mode", "read_only", "cap_drop", "user", "ipc_mode", "log_config", "tmpfs"):
        assert zygote[key] == sandbox[key], key
    # The engine's open-files limit, above what its children can put in flight (the parity suite's check).
    assert zygote["ulimits"] == [u for u in sandbox["ulimits"] if u["Name"] != "nofile"]
    assert zygote["labels"][ROLE_LABEL] == "zygote" and zygote["labels"]["grader"] == LABEL["grader"]
    assert zygote["mem_limit"] == zygote["memswap_limit"] > 512 << 20  # still no swap
    assert zygote["volumes"] == {"/srv/socket": {"bind": "/run/zygote", "mode": "rw"}}
    assert zygote["security_opt"][0] == "no-new-privileges"


def test_a_zygote_for_more_slots_has_room_for_each() -> None:
    """Does a zygote container that serves a worker's two slots get, for each, the child's limits and room for
    a child kept ahead (what a child's own cgroups allow it), so that one slot's bomb never takes the other's
    share, and each slot's CPUs (before, two slots shared one slot's CPU quota)?"""
    one, two = (zygote_config("img", SandboxSpec(limits=Limits(memory_mb=512, pids=32), slots=n), None, "/s")
                for n in (1, 2))
    assert two["mem_limit"] - one["mem_limit"] >= (512 << 20) + (SLOT_MEMORY_MB << 20)
    assert two["pids_limit"] - one["pids_limit"] == child_pids(SandboxSpec(limits=Limits(pids=32))) >= 2 * 32
    assert two["memswap_limit"] == two["mem_limit"]
    assert two["nano_cpus"] == 2 * one["nano_cpus"] == 2 * Limits().cpus * 1e9


def test_each_slot_has_room_for_the_test_processes_its_sandbox_may_park() -> None:
    """Does a slot's share of the zygote's container cover the most test processes a sandbox parks at once, each
    with the most it may have grown and ~16 MB of pages copied from the post-import process?"""
    assert PARKED_MEMORY_MB >= MAX_PARKED * ((PARK_GROWTH_BYTES >> 20) + 16)
    assert SLOT_MEMORY_MB >= 256 + PARKED_MEMORY_MB  # the child's tmpfs and its idle successor come first


def test_the_zygote_profile_is_dockers_default_plus_the_namespace_calls() -> None:
    """Does the zygote's seccomp profile add to Docker's default exactly the calls that build namespaces, and
    take away exactly those that every sandbox's own filter refuses too?"""
    default = json.loads(MOBY_PROFILE.read_text())
    fresh = json.loads(seccomp_profile())
    profile = json.loads(seccomp_profile(ZYGOTE_EXTRA_SYSCALLS))
    assert profile["syscalls"][:-1] == fresh["syscalls"]
    assert profile["defaultAction"] == fresh["defaultAction"] == default["defaultAction"] == "SCMP_ACT_ERRNO"
    allowed = {name for rule in default["syscalls"] for name in rule["names"]}
    assert {name for rule in fresh["syscalls"] for name in rule["names"]} == allowed - set(REFUSED)
    assert {"setpriority", "sched_setscheduler", "sched_setattr", "ptrace"} <= set(REFUSED) & allowed
    extra = profile["syscalls"][-1]
    assert sorted(extra["names"]) == sorted(ZYGOTE_EXTRA_SYSCALLS) and "args" not in extra
    assert not {"ptrace", "bpf", "keyctl", "setns", "perf_event_open", "io_uring_setup"} & set(extra["names"])


# The owner handles SIGINT as a worker does (Celery installs its own handlers), even where this suite was started
# with SIGINT ignored (a shell's background job), which a plain Python child would inherit and keep.
OWNER = textwrap.dedent('''
    import json, signal, sys, time
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from pathlib import Path
    from worker.engine.grade import grade
    from worker.engine.manifest import get_assignment
    from worker.engine.runners import make_runner
    from worker.engine.judge.launch import WarmJudge, start_master
    if "--master" in sys.argv:  # as a worker's main process does, before its pool (here: this thread) grades
        start_master(2)
    judge = WarmJudge()
    assignment = get_assignment("autograd")
    source = Path("reference_tests/autograd/reference/solution.py").read_bytes()
    result = grade(assignment, {"solution.py": source}, make_runner("docker", sandbox="fork"), judge=judge)
    print(json.dumps({"score": result.score}), flush=True)
    time.sleep(600)
''')


def _zygotes() -> set[str]:
    import docker

    client = docker.from_env()
    try:
        filters = {"label": [f"{ROLE_LABEL}=zygote"]}
        # sparse: the list call alone, with no inspection per container (one removed meanwhile answered 404)
        return {c.id for c in client.containers.list(all=True, filters=filters, sparse=True)}
    finally:
        client.close()


def _zygote_processes(known: frozenset[str] = frozenset()) -> list[str]:
    """Zygote processes on this host (a container's, seen from here, or a local one, or the judge's: a judge
    master, its keeper, a judge zygote), but those in `known`."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if any(mark in command for mark in ("grader-sandbox/zygote.py", "worker/sandbox/zygote.py",
                                                "worker.engine.judge --")) and proc.name not in known:
                found.append(f"{proc.name} {command[:120]}")
    return found


@engine
@pytest.mark.parametrize(("how", "master"), [
    ("SIGINT to the group", False), ("SIGTERM to the parent", False), ("SIGTERM to the group", False),
    ("SIGKILL to the group", False),
    ("SIGTERM to the parent", True), ("SIGKILL to the parent", True), ("SIGKILL to the group", True)])
def test_a_worker_stopped_any_way_leaves_no_sandbox_behind(how: str, master: bool, docker_ready: bool) -> None:
    """A worker process that graded with the warm judge and the Docker zygote is stopped: is its zygote container
    gone, with every process of it, within seconds? With a judge master too, whose keeper owns the container,
    even when only the worker's own process is SIGKILLed?"""
    before = _zygotes()
    others = frozenset(entry.split()[0] for entry in _zygote_processes())  # other users' zygotes, if any
    argv = [sys.executable, "-c", OWNER, *(["--master"] if master else [])]
    owner = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True)
    try:
        assert owner.stdout is not None
        line = owner.stdout.readline()
        assert json.loads(line)["score"] == 100, line
        assert _zygotes() - before, "the worker's zygote container runs while the worker does"
        signum = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}[how.split()[0]]
        if how.endswith("group"):
            os.killpg(owner.pid, signum)
        else:
            owner.send_signal(signum)
        owner.wait(timeout=60)
        deadline = time.monotonic() + 30
        while (_zygotes() - before or _zygote_processes(others)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _zygotes() - before == set(), f"{how}: zygote containers left behind"
        assert _zygote_processes(others) == [], f"{how}: zygote processes left behind"
    finally:
        if owner.poll() is None:
            os.killpg(owner.pid, signal.SIGKILL)
            owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()
