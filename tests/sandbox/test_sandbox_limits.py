"""The local sandbox's limits, and what is left after it: each limit just below and above its value, a stopped
sandbox leaving no file or process, a stalled one unable to hang the judge — in both sandbox modes ("fresh",
the parity baseline, and "fork"), with the same probe as `test_sandbox_isolation.py`. No hostile code runs
outside a sandbox.
"""

from __future__ import annotations

import errno
import os
import struct
import textwrap
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.isolation_probe import (
    MB,
    PROBE,
    WORKER_TMP,
    host_tasks,
    needs_namespaces,
    needs_root,
)
from tests.support.sandbox_support import Probe, children_get_cpu_cgroups, leftover_cgroups, processes_named
from worker.engine.grade import grade
from worker.engine.manifest import Limits, load_assignment
from worker.engine.runners import child_cgroup
from worker.engine.runners.base import SandboxSpec
from worker.engine.runners.local import LocalRunner
from worker.sandbox import wire
from worker.sandbox.globalstate import KEEP_CPU_SECONDS

pytestmark = needs_namespaces


# -- resource limits -------------------------------------------------------------------------------------------
def test_limits_are_in_place(probe: Callable[..., Probe]) -> None:
    """Are the CPU, memory, file-size, open-file, core and process limits set as the manifest says?"""
    limits = Limits(memory_mb=768, pids=48, run_timeout=60, test_timeout=7)
    seen = probe(limits).call("rlimits")
    soft, hard = seen["RLIMIT_CPU"]
    # The CPU budget is the per-test limit, counted from the moment the server could serve (a fresh server
    # spent some on importing torch first); the hard limit is one second of grace later, plus the CPU a test's
    # process may have used and still be kept for the next test (that one's soft limit moves up, never the hard).
    assert 7 - 0.5 <= soft - seen["cpu_used"] <= 7 + 1.5 and hard == soft + 1 + KEEP_CPU_SECONDS, seen
    assert seen["RLIMIT_DATA"] == [768 * MB, 768 * MB]
    assert seen["RLIMIT_FSIZE"] == [32 * MB, 32 * MB]
    assert seen["RLIMIT_NOFILE"] == [256, 256]
    assert seen["RLIMIT_CORE"] == [0, 0]
    if os.geteuid() == 0:
        assert seen["RLIMIT_NPROC"] == [48, 48]


@needs_root
def test_process_limit(probe: Callable[..., Probe]) -> None:
    """Can student code run more processes than its limit (a fork bomb)?"""
    limit = 24
    p = probe(Limits(pids=limit))
    uid = p.call("identity")["uid"]
    others = len(host_tasks(uid))  # RLIMIT_NPROC counts every task of the uid: here, this sandbox's own
    below = p.call("fork_children", 4)
    assert below == {"children": 4, "errno": None}, below
    above = p.call("fork_children", 1000)
    assert above["errno"] == errno.EAGAIN, above
    # The limit holds, and not far below it: everything of the sandbox's uid together stops at `limit` tasks.
    assert limit - others - 4 <= above["children"] < limit, (above, others)


@needs_root
def test_process_limit_is_per_sandbox(probe: Callable[..., Probe]) -> None:
    """Can one submission's fork bomb stop another submission, graded at the same time, from working?"""
    victim = probe(Limits(pids=32))
    bomb = probe(Limits(pids=32))
    held = bomb.call("fork_children", 1000)
    assert held["errno"] == errno.EAGAIN, held
    seen = victim.call("fork_children", 2)
    assert seen == {"children": 2, "errno": None}, (
        f"another sandbox's fork bomb left this one unable to fork ({seen}): RLIMIT_NPROC counts every process "
        "of its uid on the worker, so sandboxes sharing a uid share one budget")


def test_file_size_limit(probe: Callable[..., Probe]) -> None:
    """Can student code write a file larger than 32 MiB (half its 64 MiB work directory)?"""
    p = probe()
    assert p.call("file_of_size", 32 * MB) == "ok"
    assert p.call("file_of_size", 32 * MB + 1) == "EFBIG"


def test_open_file_limit(probe: Callable[..., Probe]) -> None:
    """Can student code hold more than 256 open files?"""
    seen = probe().call("open_files")
    assert seen == {"open": 256, "errno": errno.EMFILE}, seen


def test_memory_limit(probe: Callable[..., Probe]) -> None:
    """Can student code allocate more memory than the manifest's memory_mb?"""
    p = probe(Limits(memory_mb=640))
    used = p.call("vm_data")
    room = 640 * MB - used
    assert room > 128 * MB, f"the server already uses {used / MB:.0f} MiB of its 640 MiB"
    assert p.call("allocate", room - 48 * MB) == "ok"
    assert p.call("allocate", room + 48 * MB) == "MemoryError"


def test_cpu_limit_kills_a_spinning_sandbox(probe: Callable[..., Probe]) -> None:
    """Is a CPU hog stopped by the CPU-time limit even if nothing watched the wall clock?"""
    p = probe(Limits(test_timeout=4))  # RLIMIT_CPU: 4 s from the moment the server could serve
    assert p.call("burn", 2.5) == "survived"
    with pytest.raises(EOFError):
        p.call("burn", 30.0, timeout=60)
    assert p.sandbox.exit_info(wait=5).state in ("killed", "exited")


def test_gpu_optional_assignment_keeps_limits_without_gpu(tmp_path: Path) -> None:
    """On a worker without a GPU, does a GPU-optional assignment keep its memory limit and hide /sys?"""
    folder = tmp_path / "probe"
    folder.mkdir()
    (folder / "assignment.toml").write_text(textwrap.dedent('''
        id = "probe"
        title = "Isolation probe"
        files = ["solution.py"]
        tests = ["test_*.py"]
        [limits]
        test_timeout = 20
        memory_mb = 512
        [gpu]
        use = "optional"
        [[deliverables]]
        id = "limits"
        title = "Limits"
        points = 2
    '''))
    (folder / "test_limits.py").write_text(textwrap.dedent('''
        import pytest

        pytestmark = pytest.mark.deliverable("limits")


        @pytest.mark.points(1)
        def test_memory_limit(student):
            data = student.rlimits()["RLIMIT_DATA"]
            assert data == [512 * 1024 * 1024] * 2, f"RLIMIT_DATA is {data}"


        @pytest.mark.points(1)
        def test_sys_hidden(student):
            seen = student.paths(["/sys/class", "/dev/nvidiactl"])
            assert not any(entry["exists"] for entry in seen.values()), seen
    '''))
    import torch

    if torch.cuda.is_available():
        pytest.skip("this worker has a GPU")
    result = grade(load_assignment(folder), {"solution.py": PROBE.encode()}, LocalRunner())
    failures = [f"{t.name}: {t.output}" for d in result.deliverables for t in d.tests if t.status != "passed"]
    assert result.score == 2, failures


def test_are_a_sandboxs_processes_in_cgroups_of_its_own_that_go_with_it(probe: Callable[..., Probe]) -> None:
    """Where the host lets the worker make cgroups: are a local sandbox, fresh or forked, and every process it
    starts in memory, pids and CPU cgroups of its own, one slot's share (without them a fresh one's processes,
    each under its own rlimits, could together fill the host's memory), and are they gone once it has stopped?"""
    if not child_cgroup.possible():
        pytest.skip("this host gives sandboxes no cgroups of their own (not root, or not cgroup v1)")
    limits = Limits(memory_mb=768, pids=40)
    p = probe(limits)
    folders = {controller: Path(folder) for controller, folder in child_cgroup.named_dirs(p.call("cgroups")).items()}
    name = folders["memory"].name
    assert name.startswith(child_cgroup.FRESH_PREFIX if p.mode == "fresh" else child_cgroup.PREFIX), folders
    memory_mb, pids, cpus = child_cgroup.child_limits(SandboxSpec(limits=limits))
    assert int((folders["memory"] / "memory.limit_in_bytes").read_text()) == memory_mb << 20
    assert folders["pids"].name == name and int((folders["pids"] / "pids.max").read_text()) == pids
    if children_get_cpu_cgroups():
        period = int((folders["cpu"] / "cpu.cfs_period_us").read_text())
        assert folders["cpu"].name == name
        assert int((folders["cpu"] / "cpu.cfs_quota_us").read_text()) == round(cpus * period)
    before = (folders["memory"] / "cgroup.procs").read_text().split()
    assert p.call("fork_children", 3) == {"children": 3, "errno": None}
    for controller, folder in folders.items():
        if folder.name == name:
            assert len((folder / "cgroup.procs").read_text().split()) == len(before) + 3, controller
    p.stop()
    deadline = time.monotonic() + 5
    while any(folder.exists() for folder in folders.values() if folder.name == name) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(folder.exists() for folder in folders.values() if folder.name == name), folders


def test_does_a_fresh_sandboxs_start_remove_the_cgroups_a_killed_judges_left(
        local_runners: dict[str, LocalRunner]) -> None:
    """Does a fresh local sandbox's start remove the cgroups that fresh sandboxes of a judge killed outright left
    behind, and not those of a judge that lives?"""
    if local_runners["fresh"].sandbox != "fresh" or not child_cgroup.possible():
        pytest.skip("this host gives sandboxes no cgroups of their own (not root, or not cgroup v1)")
    left, living = leftover_cgroups(child_cgroup.FRESH_PREFIX)
    try:
        sandbox = local_runners["fresh"].prepare(SandboxSpec(limits=Limits()))
        sandbox.stop()
        assert not any(folder.exists() for folder in left) and all(folder.exists() for folder in living)
    finally:
        for folder in living:
            folder.rmdir()


# -- what is left afterwards ----------------------------------------------------------------------------------
def test_stop_removes_everything(probe: Callable[..., Probe], tmp_path: Path) -> None:
    """Does stopping a sandbox remove its files and kill a daemon that double-forked and called setsid?"""
    canary = WORKER_TMP / f"grader-isolation-canary-{uuid.uuid4().hex}"
    canary.mkdir()
    (canary / "keep.txt").write_text("keep")
    try:
        p = probe()
        tag = f"gd{uuid.uuid4().hex[:10]}"
        p.call("daemon", tag)
        assert processes_named(tag), "the daemon should run while its sandbox does"
        made = p.call("links", {"canary_abs": str(canary), "canary_rel": "../" * 12 + str(canary)[1:],
                                "etc": "/etc", "up": "../../"})
        assert not any(m.startswith("wrote through canary") for m in made), made
        folder = p.path
        assert folder is None or folder.exists()
        p.stop()
        assert folder is None or not folder.exists(), "the sandbox folder is left on the worker"
        deadline = time.monotonic() + 5
        while processes_named(tag) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processes_named(tag) == [], "the daemon outlived its sandbox"
        assert sorted(p.name for p in canary.iterdir()) == ["keep.txt"], "cleanup followed a symlink"
        assert Path("/etc/passwd").exists()
    finally:
        for item in canary.iterdir():
            item.unlink()
        canary.rmdir()


def test_server_and_python_are_read_only(probe: Callable[..., Probe]) -> None:
    """Can student code modify the student server, the Python installation or the sandbox's root?"""
    import torch

    p = probe()
    server = ["/sandbox/server/student_server.py", "/sandbox/server/wire.py"] if p.mode == "fresh" else []
    targets = [*server, str(Path(torch.__file__)), str(Path(os.__file__)), "/etc/passwd", "/usr/bin/env"]
    seen = p.call("tamper", targets)
    assert all(outcome in ("EROFS", "EACCES", "EPERM", "ETXTBSY") for outcome in seen.values()), seen


def test_a_stalled_sandbox_cannot_hang_the_judge(probe: Callable[..., Probe]) -> None:
    """Can a submission that stops reading requests make the judge's next write block forever?"""
    limits = Limits(test_timeout=3)
    p = probe(limits)
    assert p.reply("stall")["value"] == "forged"  # the server now sleeps instead of reading stdin
    big = wire.encode_frame({"op": "call", "fn": "identity", "args": ["x" * (4 * MB)], "kwargs": {}})
    outcome: list[BaseException | None] = []

    def send() -> None:
        try:
            p.sandbox.write(big)
            outcome.append(None)
        except BaseException as exc:  # recorded for the assertion
            outcome.append(exc)

    writer = threading.Thread(target=send, daemon=True)
    writer.start()
    writer.join(timeout=limits.test_timeout + 10)
    blocked = writer.is_alive()
    p.stop()  # unblocks the write either way
    writer.join(timeout=10)
    assert not blocked, ("Sandbox.write() blocked on a sandbox that no longer reads: the judge would hang until "
                         "the outer timeout and report an infrastructure error")
    assert outcome and isinstance(outcome[0], OSError), outcome


def test_frames_over_the_limit_are_refused() -> None:
    """Does the judge's frame reader refuse a length header over 32 MiB before buffering the body?"""
    reader = wire.FrameReader()
    with pytest.raises(wire.WireError):
        reader.feed(struct.pack(">I", wire.MAX_FRAME + 1))
    reader = wire.FrameReader()
    reader.feed(struct.pack(">I", 5) + b"[1,2]")
    with pytest.raises(wire.WireError):
        reader.next_frame()  # valid JSON, but not an object
