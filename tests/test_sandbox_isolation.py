"""Trying to break out of the local runner's sandbox, one question at a time, in both sandbox modes.

Every probe runs twice, against a fresh sandbox process ("fresh", the parity baseline) and against a child
forked from a sandbox zygote ("fork", the default), and must get the same verdict from both. Each test starts
real sandboxes (`LocalRunner(sandbox=mode).prepare(...)`), loads a probe module as the student's
`solution.py` and calls its functions over the wire protocol, exactly as the judge does; the probe reports what
it could see and do from the inside, and the test checks it from the outside too where that is possible (the
worker's /proc, its files, a listening socket). A few tests grade a tiny assignment written into `tmp_path`, to
check what the engine as a whole hands to the sandbox. Limits are tested just below and just above their value
where that is practical. No hostile code runs outside a sandbox; network checks only target 127.0.0.1.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.sandbox_support import MODES, Probe
from worker.engine.grade import grade
from worker.engine.manifest import Limits, load_assignment
from worker.engine.runners.local import SANDBOX_UIDS, LocalRunner, namespace_mode
from worker.sandbox import wire

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "reference_tests" / "autograd" / "reference" / "solution.py"
HIDDEN_TESTS = REPO / "reference_tests" / "autograd" / "test_simple_gradients.py"
MB = 1024 * 1024
WORKER_TMP = Path("/tmp")  # noqa: S108  (the worker's own /tmp, on purpose: the sandbox must not see it)
SANDBOX_TMP = "/tmp"  # noqa: S108  (the sandbox's private /tmp, as the probe sees it)

pytestmark = pytest.mark.skipif(namespace_mode() == "none",
                                reason="this kernel gives the local runner no namespaces to test")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the uid drop and RLIMIT_NPROC apply only as root")

# The student's solution.py in every sandbox of this file: small functions that report what they can do.
PROBE = textwrap.dedent('''
    import ctypes
    import errno
    import fcntl
    import gc
    import json
    import os
    import socket
    import struct
    import time


    def identity():
        status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines()
                      if ":\\t" in line)
        keep = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs")
        return {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups(),
                **{k: status.get(k, "").strip() for k in keep}}


    def run(argv):
        import subprocess
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        return {"rc": done.returncode, "out": done.stdout[-500:], "err": done.stderr[-500:]}


    def network(port, unix_paths):
        result = {"interfaces": [name for _, name in socket.if_nameindex()], "reached": [], "errors": {}}
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            request = struct.pack("16sH", b"lo", 0)
            result["lo_flags"] = struct.unpack("16sH", fcntl.ioctl(s.fileno(), 0x8913, request))[1]  # SIOCGIFFLAGS
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            try:
                with socket.socket(family, socket.SOCK_STREAM) as s:
                    s.settimeout(2)
                    s.connect((host, port))
                    result["reached"].append(host)
            except OSError as exc:
                result["errors"][host] = exc.errno
        for path in unix_paths:
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(path)
                    result["reached"].append(path)
            except OSError as exc:
                result["errors"][path] = exc.errno
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(b"x", ("127.0.0.1", port))
                result["reached"].append("udp")
        except OSError as exc:
            result["errors"]["udp"] = exc.errno
        return result


    def processes(host_pid):
        seen = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    seen[name] = open(f"/proc/{name}/cmdline", "rb").read().replace(b"\\0", b" ").decode()
                except OSError:
                    pass
        try:
            os.kill(host_pid, 0)
            signal_host = "delivered"
        except ProcessLookupError:
            signal_host = "no such process"
        except PermissionError:
            signal_host = "permission denied"
        return {"pids": seen, "me": os.getpid(), "signal_host": signal_host}


    def paths(candidates):
        found = {}
        for path in candidates:
            entry = {"exists": os.path.lexists(path)}
            try:
                with open(path, "rb") as handle:
                    entry["read"] = handle.read(64).decode("utf-8", "replace")
            except OSError as exc:
                entry["error"] = exc.errno
            try:
                entry["listdir"] = sorted(os.listdir(path))[:50]
            except OSError:
                pass
            found[path] = entry
        return found


    def environment():
        return dict(os.environ)


    def write_files(folder, size, count):
        """Write `count` files of `size` bytes into `folder`; stop at the first error."""
        written = 0
        for i in range(count):
            path = os.path.join(folder, f"fill-{i}")
            try:
                with open(path, "wb") as handle:
                    left = size
                    while left:
                        chunk = min(left, 1 << 20)
                        handle.write(b"\\1" * chunk)
                        left -= chunk
                written += 1
            except OSError as exc:
                return {"written": written, "errno": exc.errno}
        return {"written": written, "errno": None}


    def remove_files(folder):
        for name in os.listdir(folder):
            if name.startswith("fill-"):
                os.unlink(os.path.join(folder, name))


    def rlimits():
        import resource
        names = ("RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_AS", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_NPROC",
                 "RLIMIT_CORE")
        return {**{n: list(resource.getrlimit(getattr(resource, n))) for n in names},
                "cpu_used": time.process_time()}


    def raise_limits():
        import resource
        failures = {}
        for name in ("RLIMIT_NPROC", "RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_CPU"):
            which = getattr(resource, name)
            soft, hard = resource.getrlimit(which)
            try:
                resource.setrlimit(which, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
                failures[name] = "raised"
            except (ValueError, OSError) as exc:
                failures[name] = type(exc).__name__
        return failures


    CHILDREN = []


    def fork_children(limit):
        """Fork sleeping children until fork() fails or `limit` are running; how many, and why it stopped."""
        while len(CHILDREN) < limit:
            try:
                pid = os.fork()
            except OSError as exc:
                return {"children": len(CHILDREN), "errno": exc.errno}
            if pid == 0:
                try:
                    while True:
                        time.sleep(3600)
                finally:
                    os._exit(0)
            CHILDREN.append(pid)
        return {"children": len(CHILDREN), "errno": None}


    def threads():
        return int(open("/proc/self/status").read().split("Threads:")[1].split()[0])


    HANDLES = []


    def open_files():
        already = len(os.listdir("/proc/self/fd")) - 1  # not counting listdir's own descriptor
        try:
            while True:
                HANDLES.append(open("/dev/null", "rb"))
        except OSError as exc:
            count = already + len(HANDLES)
            for handle in HANDLES:
                handle.close()
            HANDLES.clear()
            return {"open": count, "errno": exc.errno}


    def file_of_size(size):
        try:
            with open("sized", "wb") as handle:
                handle.write(b"\\0" * size)
            return "ok"
        except OSError as exc:
            return errno.errorcode[exc.errno]
        finally:
            try:
                os.unlink("sized")
            except OSError:
                pass


    def vm_data():
        return int(open("/proc/self/status").read().split("VmData:")[1].split()[0]) * 1024


    def allocate(size):
        try:
            block = bytearray(size)
            block[-1] = 1
            del block
            return "ok"
        except MemoryError:
            return "MemoryError"


    def cpu_time():
        return time.process_time()


    def burn(seconds):
        end = time.process_time() + seconds
        while time.process_time() < end:
            pass
        return "survived"


    def daemon(tag):
        """Double fork + setsid; the grandchild renames itself `tag` and sleeps forever."""
        reader, writer = os.pipe()
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                ctypes.CDLL(None).prctl(15, tag.encode(), 0, 0, 0)  # PR_SET_NAME
                os.write(writer, str(os.getpid()).encode())
                os.closerange(3, 1024)
                while True:
                    time.sleep(3600)
            os._exit(0)
        pid = int(os.read(reader, 32))
        os.close(reader)
        os.close(writer)
        return pid


    def links(targets):
        made = []
        for name, target in targets.items():
            os.symlink(target, name)
            made.append(name)
        for name in targets:
            try:
                with open(os.path.join(name, "written-through-link"), "w") as handle:
                    handle.write("x")
                made.append("wrote through " + name)
            except OSError:
                pass
        return made


    def tamper(candidates):
        result = {}
        for path in candidates:
            try:
                with open(path, "a") as handle:
                    handle.write("# tampered")
                result[path] = "written"
            except OSError as exc:
                result[path] = errno.errorcode[exc.errno]
        try:
            os.mkdir("/evil")
            result["/evil"] = "created"
        except OSError as exc:
            result["/evil"] = errno.errorcode[exc.errno]
        return result


    def stall():
        """Reply "ok" on the protocol stream by hand, then stop serving (and stop reading requests)."""
        server = next(o for o in gc.get_objects() if type(o).__name__ == "Server" and hasattr(o, "proto_out"))
        body = json.dumps({"ok": True, "value": "forged", "writeback": [], "output": ""}).encode()
        server.proto_out.write(struct.pack(">I", len(body)) + body)
        server.proto_out.flush()
        while True:
            time.sleep(3600)
''')


@pytest.fixture(scope="module")
def local_runners() -> Iterator[dict[str, LocalRunner]]:
    """One local runner per sandbox mode for the module (the fork one keeps its zygotes between tests)."""
    runners = {mode: LocalRunner(sandbox=mode) for mode in MODES}
    yield runners
    for runner in runners.values():
        runner.close()


@pytest.fixture(params=MODES)
def probe(request: pytest.FixtureRequest, local_runners: dict[str, LocalRunner]) -> Iterator[Callable[..., Probe]]:
    """Start probes in the test's sandbox mode; every one is stopped at the end of the test."""
    started: list[Probe] = []
    runner = local_runners[request.param]
    if runner.sandbox != request.param:
        pytest.skip(f"the local runner cannot {request.param} sandboxes here")

    def start(limits: Limits | None = None, gpu: bool = False) -> Probe:
        started.append(Probe(runner, PROBE, limits, gpu))
        return started[-1]

    yield start
    for p in started:
        p.stop()


def _python_dirs() -> list[Path]:
    return [Path(os.path.realpath(p)) for p in (sys.prefix, sys.base_prefix)]


def _only_leads_to_python(path: str, entry: dict[str, Any]) -> bool:
    """True for a folder that the sandbox has only because a Python installation is mounted below it."""
    here = Path(path)
    below = {d.relative_to(here).parts[0] for d in _python_dirs() if here in d.parents}
    return bool(below) and set(entry.get("listdir", [])) <= below


def _host_tasks(uid: int) -> list[tuple[int, str]]:
    """(pid, comm) of every task on the worker that runs as `uid` (threads count for RLIMIT_NPROC)."""
    tasks = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for task in (proc / "task").iterdir():
                status = (task / "status").read_text()
                if int(status.split("Uid:")[1].split()[0]) == uid:
                    tasks.append((int(task.name), status.split("Name:")[1].split()[0]))
        except (OSError, IndexError, ValueError):
            continue
    return tasks


def _processes_named(name: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "comm").read_text().strip() == name:
                found.append(int(proc.name))
        except OSError:
            continue
    return found


# -- who the student is ------------------------------------------------------------------------------------
@needs_root
def test_student_is_nobody_without_capabilities(probe: Callable[..., Probe]) -> None:
    """Does student code run as a sandbox uid of its own, with no capabilities, groups or way to gain privileges?"""
    me = probe().call("identity")
    assert me["uid"] in SANDBOX_UIDS and me["uid"] == me["euid"] == me["gid"]
    assert me["groups"] == [] or me["groups"] == [me["uid"]]
    for field in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(me[field], 16) == 0, f"{field} is {me[field]}"
    assert me["NoNewPrivs"] == "1"


@needs_root
def test_setuid_binaries_give_nothing_back(probe: Callable[..., Probe]) -> None:
    """Can student code become root again through a setuid-root binary (mount, su)?"""
    p = probe()
    mounted = p.call("run", ["mount", "-t", "tmpfs", "none", SANDBOX_TMP])
    assert mounted["rc"] != 0, mounted
    assert "superuser" in mounted["err"] or "permission" in mounted["err"].lower(), mounted
    whoami = p.call("run", ["id", "-u"])
    assert int(whoami["out"].strip()) in SANDBOX_UIDS


def test_limits_cannot_be_raised(probe: Callable[..., Probe]) -> None:
    """Can student code lift its own resource limits?"""
    attempts = probe().call("raise_limits")
    assert all(outcome != "raised" for outcome in attempts.values()), attempts


# -- what the student can reach ------------------------------------------------------------------------------
def test_no_network(probe: Callable[..., Probe]) -> None:
    """Can student code reach a service listening on the worker's 127.0.0.1 (as Redis and PostgreSQL do)?"""
    accepted: list[object] = []
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        server.settimeout(0.2)
        port = server.getsockname()[1]
        seen = probe().call("network", port, ["/var/run/docker.sock", "/run/docker.sock",
                                              "/var/run/postgresql/.s.PGSQL.5432"])
        try:
            conn, peer = server.accept()
            conn.close()
            accepted.append(peer)
        except TimeoutError:
            pass
    assert seen["reached"] == [], seen
    assert accepted == []
    assert seen["interfaces"] == ["lo"], seen
    assert not seen["lo_flags"] & 0x1, f"lo is up (flags {seen['lo_flags']:#x})"  # IFF_UP
    assert seen["errors"]["127.0.0.1"] in (errno.ENETUNREACH, errno.ECONNREFUSED), seen


def test_only_sandbox_processes_are_visible(probe: Callable[..., Probe]) -> None:
    """Can student code see or signal the worker's processes (the judge, the web app, the database)?"""
    seen = probe().call("processes", os.getpid())
    assert seen["me"] == 1, "the student server is the first process of its own pid namespace"
    assert set(seen["pids"]) == {"1"}, seen["pids"]
    assert "student_server.py" in seen["pids"]["1"] or "zygote.py" in seen["pids"]["1"]
    assert seen["signal_host"] == "no such process"


def test_repository_reference_and_service_data_are_invisible(
        probe: Callable[..., Probe], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Can student code read the reference solution, the hidden tests, the repository or GRADER_HOME?"""
    home = tmp_path / "grader-home"
    home.mkdir()
    secret = f"grader-canary-{uuid.uuid4().hex}"
    (home / "secret_key").write_text(secret)
    (home / "grader.db").write_text(secret)
    monkeypatch.setenv("GRADER_HOME", str(home))
    monkeypatch.setenv("SECRET_KEY", secret)
    monkeypatch.setenv("DATABASE_URL", f"postgresql://{secret}@127.0.0.1/grader")
    p = probe()
    wanted = [str(REFERENCE), str(HIDDEN_TESTS), str(REFERENCE.parent), str(REPO / "reference_tests"),
              str(REPO / "grader"), str(REPO / "instance"), str(REPO / "pyproject.toml"), str(home),
              str(home / "secret_key"), str(home / "grader.db"), "/root", "/home", "/var/run/docker.sock",
              "/run", "/var", "/proc/1/root" + str(REFERENCE), "/sandbox/work/../../" + str(REFERENCE)]
    seen = p.call("paths", wanted)
    leaks = {path: entry for path, entry in seen.items()
             if entry["exists"] and not _only_leads_to_python(path, entry)}
    assert leaks == {}, leaks
    env = p.call("environment")
    assert secret not in repr(env)
    assert not set(env) & {"GRADER_HOME", "SECRET_KEY", "DATABASE_URL", "BROKER_URL", "PYTHONPATH"}, env
    # The Python environment is mounted read-only at its real path; nothing else of the repository comes along.
    repo = p.call("paths", [str(REPO)])[str(REPO)]
    assert set(repo.get("listdir", [])) <= {".venv"}, repo


def test_tmp_is_private_and_size_capped(probe: Callable[..., Probe], tmp_path: Path) -> None:
    """Does the sandbox see the worker's /tmp, and can it fill the worker's memory through its own /tmp?"""
    marker = WORKER_TMP / f"grader-isolation-{uuid.uuid4().hex}"
    marker.write_text("the worker's /tmp")
    try:
        p = probe()
        assert p.call("paths", [str(marker)])[str(marker)]["exists"] is False
        # /tmp is a 64 MiB tmpfs: 2 x 30 MiB fit, a third does not.
        below = p.call("write_files", SANDBOX_TMP, 30 * MB, 2)
        assert below == {"written": 2, "errno": None}, below
        p.call("remove_files", SANDBOX_TMP)
        above = p.call("write_files", SANDBOX_TMP, 30 * MB, 3)
        assert above == {"written": 2, "errno": errno.ENOSPC}, above
        assert not any(WORKER_TMP.glob("fill-*")), "the sandbox's /tmp files appeared on the worker"
    finally:
        marker.unlink()


def test_work_dir_cannot_fill_the_disk(probe: Callable[..., Probe]) -> None:
    """Can student code fill the worker's disk through its work directory (no quota on the host folder)?"""
    p = probe()
    # 6 x 30 MiB, each under the 32 MiB file-size limit: 180 MiB. Docker's /work is a 64 MiB tmpfs too.
    result = p.call("write_files", ".", 30 * MB, 6)
    p.call("remove_files", ".")
    assert result["errno"] == errno.ENOSPC and result["written"] <= 2, (
        f"the work directory took {result['written']} x 30 MiB on the worker's disk: it has no size limit")


# -- resource limits -------------------------------------------------------------------------------------------
def test_limits_are_in_place(probe: Callable[..., Probe]) -> None:
    """Are the CPU, memory, file-size, open-file, core and process limits set as the manifest says?"""
    limits = Limits(memory_mb=768, pids=48, run_timeout=60, test_timeout=7)
    seen = probe(limits).call("rlimits")
    soft, hard = seen["RLIMIT_CPU"]
    # The CPU budget is the per-test limit, counted from the moment the server could serve (a fresh server
    # spent some on importing torch first); the hard limit is one second later.
    assert 7 - 0.5 <= soft - seen["cpu_used"] <= 7 + 1.5 and hard == soft + 1, seen
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
    others = len(_host_tasks(uid))  # RLIMIT_NPROC counts every task of the uid: here, this sandbox's own
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
        assert _processes_named(tag), "the daemon should run while its sandbox does"
        made = p.call("links", {"canary_abs": str(canary), "canary_rel": "../" * 12 + str(canary)[1:],
                                "etc": "/etc", "up": "../../"})
        assert not any(m.startswith("wrote through canary") for m in made), made
        folder = p.path
        assert folder is None or folder.exists()
        p.stop()
        assert folder is None or not folder.exists(), "the sandbox folder is left on the worker"
        deadline = time.monotonic() + 5
        while _processes_named(tag) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _processes_named(tag) == [], "the daemon outlived its sandbox"
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
