"""The isolation parity gate: a forked sandbox must keep a submission as alone as a fresh container does.

The same probes run on four paths — a fresh Docker container per sandbox (the baseline), a child of a Docker
zygote container, a child of a local zygote process, and a fresh local sandbox (the local runner's baseline, on a
host without Docker) — and must get the same verdict from each: nothing a submission leaves (files in /work, /tmp,
/dev/shm or HOME, SysV IPC, abstract-socket listeners, setsid daemons) reaches the next submission on that slot or
one running beside it; only its own processes in /proc; only `lo`; no capabilities, no_new_privs, a seccomp filter;
only the expected descriptors; namespace, mount, keyring, BPF, perf, io_uring calls refused, and so is lowering its
own priority; fresh random state per child; no more than the assignment's CPUs for all its processes together; a
zygote that does not grow over 200 submissions.
"""

from __future__ import annotations

import os
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.isolation_probe import DAEMON
from tests.support.sandbox_support import Probe, children_get_cpu_cgroups, processes_named
from worker.engine.manifest import Limits
from worker.engine.runners.base import Runner, SandboxSpec
from worker.engine.runners.local import LocalRunner, namespace_mode
from worker.sandbox import wire

PATHS = ("docker-fresh", "docker-fork", "local-fork", "local-fresh")

PROBE = textwrap.dedent('''
    import ctypes
    import errno
    import os
    import random
    import socket
    import time

    libc = ctypes.CDLL(None, use_errno=True)
    KEEP = []  # listeners stay open while the sandbox lives


    def status():
        fields = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines()
                      if ":\\t" in line)
        fds = {}
        for name in os.listdir("/proc/self/fd"):
            try:
                fds[name] = os.readlink(f"/proc/self/fd/{name}")
            except OSError:
                pass  # the descriptor listdir itself used
        pids = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    pids[name] = open(f"/proc/{name}/cmdline", "rb").read().replace(b"\\0", b" ").decode()[:300]
                except OSError:
                    pass
        return {"uid": os.getuid(), "CapEff": fields["CapEff"].strip(), "CapBnd": fields["CapBnd"].strip(),
                "NoNewPrivs": fields["NoNewPrivs"].strip(), "Seccomp": fields["Seccomp"].strip(),
                "fds": fds, "pids": pids, "interfaces": [n for _, n in socket.if_nameindex()],
                "hostname": os.uname().nodename}


    def refused():
        calls = {
            "unshare_user": lambda: libc.unshare(0x10000000),
            "unshare_mount": lambda: libc.unshare(0x00020000),
            "mount": lambda: libc.mount(b"none", b"/tmp", b"tmpfs", 0, None),
            "setns": lambda: libc.setns(os.open("/proc/self/ns/net", os.O_RDONLY), 0),
            "keyctl": lambda: libc.syscall(250, 0, 0, 0, 0, 0),              # KEYCTL_GET_KEYRING_ID
            "bpf": lambda: libc.syscall(321, 0, 0, 0),
            "perf_event_open": lambda: libc.syscall(298, 0, 0, -1, -1, 0),
            "io_uring_setup": lambda: libc.syscall(425, 1, 0),
        }
        return outcomes(calls)


    def outcomes(calls):
        """What each libc call said: "allowed", or the name of its errno."""
        out = {}
        for name, call in calls.items():
            result = call()
            out[name] = "allowed" if result >= 0 else errno.errorcode.get(ctypes.get_errno(), "?")
        return out


    class SchedAttr(ctypes.Structure):
        _fields_ = [("size", ctypes.c_uint32), ("policy", ctypes.c_uint32), ("flags", ctypes.c_uint64),
                    ("nice", ctypes.c_int32), ("priority", ctypes.c_uint32), ("runtime", ctypes.c_uint64),
                    ("deadline", ctypes.c_uint64), ("period", ctypes.c_uint64)]


    def lower_priority():
        """Try every call that lowers this process's scheduling priority: what each said, and the priority after."""
        sched_setattr = {"x86_64": 314, "aarch64": 274}[os.uname().machine]
        calls = {
            "setpriority": lambda: libc.setpriority(0, 0, 19),
            "sched_setscheduler": lambda: libc.sched_setscheduler(0, 5, ctypes.byref(ctypes.c_int(0))),  # IDLE
            "sched_setattr": lambda: libc.syscall(sched_setattr, 0, ctypes.byref(SchedAttr(48, 5)), 0),
        }
        out = outcomes(calls)
        out["nice"], out["policy"] = os.getpriority(os.PRIO_PROCESS, 0), os.sched_getscheduler(0)
        return out


    def session_nice(nice=None):
        """Set (where `nice` is given) and read the nice of this process's session's autogroup: no filter
        refuses the write, once the process made itself dumpable again (its /proc files are its own then)."""
        if nice is not None:
            libc.prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE
            for _ in range(100):
                try:
                    with open("/proc/self/autogroup", "w") as autogroup:
                        autogroup.write(str(nice))
                    break
                except OSError as exc:
                    if exc.errno != errno.EAGAIN:  # the kernel takes one such write a tenth of a second
                        return errno.errorcode[exc.errno]
                    time.sleep(0.05)
        return int(open("/proc/self/autogroup").read().split()[-1])


    def fds_in_flight():
        """Send this socket's descriptor to itself, 253 at a time, never receiving, until the kernel refuses:
        descriptors in flight count per user, and a send fails once its user's count passes its own limit."""
        import array
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        KEEP.extend([a, b])
        fds, sent = array.array("i", [a.fileno()] * 253), 0
        while True:
            try:
                a.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
                sent += len(fds)
            except OSError as exc:
                return {"sent": sent, "error": errno.errorcode[exc.errno]}


    def randomness():
        import torch
        return [random.random(), float(torch.rand(1))]


    def leave(tag):
        left = {}
        for folder in ("/work", "/tmp", "/dev/shm", os.path.expanduser("~")):
            try:
                with open(os.path.join(folder, tag), "w") as handle:
                    handle.write(tag)
                left[folder] = True
            except OSError as exc:
                left[folder] = errno.errorcode[exc.errno]
        key = abs(hash(tag)) % (1 << 30) + 1
        left["shm"] = libc.shmget(key, 4096, 0o1666)   # IPC_CREAT | 0666
        left["msg"] = libc.msgget(key, 0o1666)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind("\\0" + tag)
        listener.listen(4)
        KEEP.append(listener)
        left["daemon"] = daemon(tag) > 0  # it has its name by the time it answers
        return left


    def look(tag):
        seen = {}
        for folder in ("/work", "/tmp", "/dev/shm", os.path.expanduser("~")):
            seen[folder] = os.path.exists(os.path.join(folder, tag))
        key = abs(hash(tag)) % (1 << 30) + 1
        seen["shm"] = libc.shmget(key, 0, 0) >= 0
        seen["msg"] = libc.msgget(key, 0) >= 0
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect("\\0" + tag)
            seen["abstract"] = True
        except OSError:
            seen["abstract"] = False
        names = []
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    names.append(open(f"/proc/{name}/comm").read().strip())
                except OSError:
                    pass
        seen["daemon"] = tag[:15] in names
        return seen


    def hold(megabytes):
        """Take `megabytes` more and touch every page (it stays resident); the MiB held in all."""
        block = bytearray(megabytes << 20)
        block[::4096] = b"\\1" * len(block[::4096])
        KEEP.append(block)
        return sum(len(b) for b in KEEP if isinstance(b, bytearray)) >> 20


    def bomb():
        """Take memory 32 MiB at a time until refused; how much was taken (it is let go at the end)."""
        blocks = []
        try:
            while True:
                blocks.append(bytearray(32 << 20))
                blocks[-1][::4096] = b"\\1" * len(blocks[-1][::4096])
        except MemoryError:
            return len(blocks) * 32


    def spin(processes, seconds):
        """The CPUs that `processes` processes spinning for `seconds` used together, on average."""
        start = time.monotonic()
        pids = []
        for _ in range(processes):
            pid = os.fork()
            if pid == 0:
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    pass
                os._exit(0)
            pids.append(pid)
        used = 0.0
        for pid in pids:
            _, _, usage = os.wait4(pid, 0)
            used += usage.ru_utime + usage.ru_stime
        return used / (time.monotonic() - start)


    def fork_children(count):
        children = 0
        try:
            for _ in range(count):
                if os.fork() == 0:
                    time.sleep(600)
                    os._exit(0)
                children += 1
        except OSError as exc:
            return {"children": children, "errno": exc.errno}
        return {"children": children, "errno": None}
''') + DAEMON
# PYTHONHASHSEED is fixed in every sandbox, so hash(tag) names the same SysV key on both sides of a check.


def _runner(path: str, request: pytest.FixtureRequest) -> Runner:
    if path.startswith("docker"):
        if not request.getfixturevalue("docker_ready"):
            pytest.skip("no Docker engine here")
        from worker.engine.runners.docker import DockerRunner

        return DockerRunner(sandbox=path.removeprefix("docker-"))
    if namespace_mode() == "none":
        pytest.skip("this kernel gives the local runner no namespaces")
    return LocalRunner(sandbox=path.removeprefix("local-"))


@pytest.fixture(scope="module")
def runners(request: pytest.FixtureRequest) -> Iterator[dict[str, Runner]]:
    """A runner per path, made when first asked for and closed (zygotes stopped) at the end of the module."""
    made: dict[str, Runner] = {}

    class Lazy(dict):  # type: ignore[type-arg]
        def __missing__(self, key: str) -> Runner:
            made[key] = self[key] = _runner(key, request)
            return made[key]

    yield Lazy()
    for runner in made.values():
        runner.close()


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest) -> str:
    """Which path the test runs on."""
    return str(request.param)


@pytest.fixture
def probe(path: str, runners: dict[str, Runner]) -> Iterator[Callable[..., Probe]]:
    """Start probes on the test's path; every one is stopped at the end of the test."""
    started: list[Probe] = []
    runner = runners[path]

    def start(limits: Limits | None = None, slots: int = 1) -> Probe:
        started.append(Probe(runner, PROBE, limits, slots=slots))
        return started[-1]

    yield start
    for p in started:
        p.stop()


def test_student_holds_no_privilege(probe: Callable[..., Probe]) -> None:
    """Does student code run with no capability, no_new_privs and a seccomp filter, as a uid that is not root?"""
    seen = probe().call("status")
    assert seen["uid"] != 0
    assert int(seen["CapEff"], 16) == 0 and int(seen["CapBnd"], 16) == 0, seen
    assert seen["NoNewPrivs"] == "1" and seen["Seccomp"] == "2", seen
    assert seen["interfaces"] == ["lo"], seen
    assert seen["hostname"] == "sandbox"


def test_only_its_own_processes_and_descriptors(probe: Callable[..., Probe], path: str) -> None:
    """Does /proc show only the sandbox's own processes, and does it hold only its channel and standard fds?"""
    seen = probe().call("status")
    commands = " | ".join(seen["pids"].values())
    assert len(seen["pids"]) <= 2, seen["pids"]  # the server, and docker-init in a fresh container
    assert all(("student_server.py" in c or "zygote.py" in c or "docker-init" in c) for c in seen["pids"].values()), \
        commands
    extra = {fd: target for fd, target in seen["fds"].items() if int(fd) > 2}
    assert all(t.startswith(("socket:", "pipe:", "/dev/null")) for t in extra.values()), extra
    assert len(extra) <= 3, extra


def test_namespace_mount_keyring_bpf_perf_io_uring_are_refused(probe: Callable[..., Probe]) -> None:
    """Can student code make namespaces, mount, join another namespace, or reach the kernel's keyrings, BPF,
    perf events or io_uring?"""
    seen = probe().call("refused")
    assert all(outcome != "allowed" for outcome in seen.values()), seen


def test_student_code_cannot_lower_its_own_priority(probe: Callable[..., Probe]) -> None:
    """Can student code nice itself or move to SCHED_IDLE? A thread that did would be kept waiting for a CPU by
    its own choice on a busy machine, and waiting earns a test past its limit more time."""
    seen = probe().call("lower_priority")
    assert seen == {"setpriority": "EPERM", "sched_setscheduler": "EPERM", "sched_setattr": "EPERM",
                    "nice": 0, "policy": 0}, seen


@pytest.mark.skipif(not os.path.exists("/proc/self/autogroup"), reason="this kernel groups no sessions")
def test_a_submission_that_nices_its_session_lowers_no_one_elses_priority(probe: Callable[..., Probe]) -> None:
    """Where the kernel shares a CPU between sessions (autogroups), can a submission lower the priority of the
    next submission on its slot, of one beside it, or of the worker, through a session it shares with them?"""
    host = Path("/proc/self/autogroup").read_text()
    try:
        first = probe()
        assert first.call("session_nice", 19) == 19
        assert probe().call("session_nice") == 0
        first.stop()
        assert probe().call("session_nice") == 0
        assert Path("/proc/self/autogroup").read_text() == host
    finally:  # a failure here must not leave the rest of the suite niced
        if host:  # empty: this session is in the kernel's default group, whose nice no one can change
            Path("/proc/self/autogroup").write_text(host.split()[-1])


def test_a_submission_that_fills_its_users_descriptors_in_flight_leaves_new_sandboxes_coming(
        probe: Callable[..., Probe]) -> None:
    """Children that a user namespace maps to the zygote's user share its count of descriptors in flight: can one
    that fills it stop the zygote from handing the next sandbox (its descriptors) to a judge?"""
    flooder = probe(slots=2)
    flood = flooder.call("fds_in_flight")
    assert flood["error"] == "ETOOMANYREFS" and flood["sent"] >= 253, flood  # 506 here: 256, and a message more
    assert probe(slots=2).call("session_nice") == 0  # a sandbox beside it starts and answers


def test_children_do_not_share_random_state(probe: Callable[..., Probe]) -> None:
    """Do two sandboxes draw different random numbers (Python's and torch's generators)?"""
    first, second = probe().call("randomness"), probe().call("randomness")
    assert first[0] != second[0] and first[1] != second[1], (first, second)


def test_what_a_submission_leaves_is_gone_for_the_next_on_the_slot(probe: Callable[..., Probe]) -> None:
    """Does anything a submission leaves (files, SysV IPC, an abstract socket, a setsid daemon) reach the next
    submission graded on the same slot?"""
    tag = f"gl{uuid.uuid4().hex[:12]}"
    first = probe()
    left = first.call("leave", tag)
    assert left["/work"] is True and left["/tmp"] is True and left["shm"] >= 0 and left["daemon"], left  # noqa: S108
    assert processes_named(tag), "the daemon runs while its sandbox does"
    first.stop()
    deadline = time.monotonic() + 10
    while processes_named(tag) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_named(tag) == [], "the daemon outlived its sandbox"
    seen = probe().call("look", tag)
    assert not any(seen.values()), seen


def test_what_a_submission_leaves_is_invisible_beside_it(probe: Callable[..., Probe]) -> None:
    """Can a submission graded at the same time see what another one leaves while it runs?"""
    tag = f"gb{uuid.uuid4().hex[:12]}"
    probe().call("leave", tag)
    seen = probe().call("look", tag)
    assert not any(seen.values()), seen


def test_a_fork_bomb_leaves_the_sandbox_beside_it_working(probe: Callable[..., Probe]) -> None:
    """Can one submission's fork bomb stop another one (on the same zygote) from forking?"""
    victim, bomb = probe(Limits(pids=32)), probe(Limits(pids=32))
    held = bomb.call("fork_children", 1000)
    assert held["errno"] is not None and held["children"] < 32, held
    assert victim.call("fork_children", 2) == {"children": 2, "errno": None}


def test_a_memory_bomb_leaves_the_sandbox_beside_it_working(probe: Callable[..., Probe]) -> None:
    """On a zygote that serves two slots (as a worker's two slots share one): can one submission's memory bomb
    take what the other holds, or get it killed?"""
    limits = Limits(memory_mb=768)
    victim, bomb = probe(limits, slots=2), probe(limits, slots=2)
    assert victim.call("hold", 192) == 192
    try:
        taken = bomb.call("bomb")  # refused by its own limit (a forked child's rlimit) ...
        assert taken <= 768, f"the bomb took {taken} MiB with a {limits.memory_mb} MiB limit"
    except EOFError as exc:  # ... or killed by it (a fresh container's cgroup)
        assert "memory" in str(exc), exc
    assert victim.call("hold", 64) == 256, "the sandbox beside the bomb lost its memory or its room"
    assert victim.sandbox.exit_info().state == "running"


def test_a_submissions_processes_together_get_no_more_than_its_cpus(probe: Callable[..., Probe], path: str) -> None:
    """On a zygote that serves two slots (and so has both slots' CPUs): can three processes of one submission
    spinning at once use more than the assignment's `cpus` (one), as a fresh container's --cpus forbids?"""
    if path.startswith("local") and not children_get_cpu_cgroups():
        pytest.skip("the local runner gives its sandboxes CPU cgroups only as root on cgroup v1, CPU writable")
    if os.cpu_count() == 1:
        pytest.skip("one CPU: nothing to hold a submission below")
    limits = Limits()
    used = probe(limits, slots=2).call("spin", 3, 2.0)
    assert used < limits.cpus * 1.25, f"three spinning processes used {used:.2f} CPUs with a limit of {limits.cpus}"


@pytest.mark.parametrize("path", ["local-fork"], indirect=True)
def test_the_zygote_does_not_grow_over_200_submissions(runners: dict[str, Runner], path: str) -> None:
    """After 200 children (each loads and runs code), has the zygote gained memory, descriptors or processes?"""
    runner = runners[path]
    spec = SandboxSpec(limits=Limits())
    runner.prepare(spec).stop()  # the zygote is up and has pre-forked once
    zygote = runner._zygotes._handles[spec]  # type: ignore[attr-defined]
    pid = zygote.proc.pid  # type: ignore[attr-defined]

    def footprint() -> tuple[int, int, int]:
        status = Path(f"/proc/{pid}/status").read_text()
        rss = int(status.split("VmRSS:")[1].split()[0])
        children = len(Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
        return rss, len(os.listdir(f"/proc/{pid}/fd")), children

    before = footprint()
    for i in range(200):
        sandbox = runner.prepare(spec)
        sandbox.write(wire.encode_frame({"op": "load", "id": "l", "module": "solution",
                                         "files": {"solution.py": f"import torch\nX = torch.ones({i % 7 + 1})\n"}}))
        _until_reply(sandbox, "l")
        sandbox.stop()
    time.sleep(0.5)  # the last child's waiter is reaped
    after = footprint()
    assert after[0] - before[0] < 16 * 1024, f"the zygote grew from {before[0]} to {after[0]} kB"
    assert after[1] <= before[1], f"descriptors: {before[1]} -> {after[1]}"
    assert after[2] <= max(before[2], 1), f"child processes: {before[2]} -> {after[2]}"


def _until_reply(sandbox: Any, request_id: str) -> dict[str, Any]:
    reader = wire.FrameReader()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        frame = reader.next_frame()
        if frame is not None:
            if frame.get("id") == request_id:
                return frame
            continue
        chunk = sandbox.read(timeout=max(0.0, deadline - time.monotonic()))
        assert chunk, f"the sandbox ended: {sandbox.stderr_tail()}"
        reader.feed(chunk)
    raise AssertionError("no reply")
