"""The Docker runner: the exact hardening of every sandbox container, and the isolation it really gets.

The first group needs no Docker engine: a fake client records the `containers.create` call (the only mock,
there is no GPU here) and a socket pair stands in for the attach stream. The second group runs containers of
the real runner image and checks from inside what the student's code can and cannot do.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import threading
import time
import tomllib
import uuid
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.types import DeviceRequest, LogConfig, Ulimit

from worker.engine import image as runner_image
from worker.engine.errors import InfrastructureError, UsageError
from worker.engine.manifest import Limits
from worker.engine.runners import docker as docker_runner
from worker.engine.runners.base import SandboxSpec, SandboxTimeout, deadline_left
from worker.engine.runners.docker import DockerRunner, DockerSandbox, cleanup_orphans, docker_available
from worker.sandbox import wire

ROOT = Path(__file__).resolve().parents[1]
PYTHON = "/opt/venv/bin/python"


# -- fakes -----------------------------------------------------------------------------------------------
class FakeContainer:
    """Stands in for docker's Container: its attach socket is one end of a socket pair."""

    def __init__(self, attach_end: socket.socket) -> None:
        self.id = "c0ffee" * 10
        self.attach_end = attach_end
        self.attrs: dict[str, Any] = {"State": {"Status": "running", "Running": True}}
        self.calls: list[tuple[str, Any]] = []

    def attach_socket(self, params: dict[str, int]) -> socket.socket:
        self.calls.append(("attach", params))
        return self.attach_end

    def start(self) -> None:
        self.calls.append(("start", None))

    def reload(self) -> None:
        self.calls.append(("reload", None))

    def wait(self, timeout: float) -> None:
        self.calls.append(("wait", timeout))

    def remove(self, **kwargs: Any) -> None:
        self.calls.append(("remove", kwargs))


class FakeClient:
    """Records `containers.create(**kwargs)`; each container gets a fresh socket pair (or create fails)."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.created: list[dict[str, Any]] = []
        self.made: list[FakeContainer] = []
        self.far_ends: list[socket.socket] = []
        self.closed = False
        self.containers = self

    def create(self, **kwargs: Any) -> FakeContainer:
        self.created.append(kwargs)
        if self.error is not None:
            raise self.error
        ours, theirs = socket.socketpair()
        self.far_ends.append(theirs)
        self.made.append(FakeContainer(ours))
        return self.made[-1]

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch):
    """A runner whose Docker client is a FakeClient."""
    client = FakeClient()
    monkeypatch.setattr(DockerRunner, "_connect", lambda self: client)
    monkeypatch.delenv("GRADER_GPUS", raising=False)
    yield client
    for container in client.made:
        container.attach_end.close()  # stop() closed it already; closing twice is harmless
    for end in client.far_ends:
        end.close()


def _mux(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(payload)) + payload


# -- the create call, exactly ------------------------------------------------------------------------------
def test_create_kwargs_are_exactly_the_hardened_ones(fake: FakeClient) -> None:
    client = fake
    limits = Limits(memory_mb=512, cpus=1.5, pids=32, output_kb=16)
    runner = DockerRunner(sandbox="fresh", image="grader-runner:test", gpus="all")
    with runner.prepare(SandboxSpec(limits=limits, gpu=True)) as sandbox:
        assert isinstance(sandbox, DockerSandbox)
    (kwargs,) = client.created
    assert re.fullmatch(r"grader-sandbox-[0-9a-f]{12}", kwargs.pop("name"))
    assert kwargs == {
        "image": "grader-runner:test",
        "labels": {"grader": "sandbox"},
        "user": "10001:10001",
        "working_dir": "/work",
        "environment": {"HOME": "/work", "LANG": "C.UTF-8", "PATH": "/opt/venv/bin:/usr/bin:/bin",
                        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1",
                        "GRADER_OUTPUT_LIMIT": "16384", "GRADER_CPU_SECONDS": "10.0",
                        "GRADER_OWN_PID_NAMESPACE": "1"},
        "stdin_open": True,
        "tty": False,
        "network_mode": "none",
        "read_only": True,
        "tmpfs": {"/work": "rw,size=64m,mode=1777,nosuid,nodev,noexec",
                  "/tmp": "rw,size=64m,mode=1777,nosuid,nodev,noexec"},  # noqa: S108 (in the container)
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "pids_limit": 32,
        "mem_limit": 512 * 1024 * 1024,
        "memswap_limit": 512 * 1024 * 1024,
        "nano_cpus": 1_500_000_000,
        "ulimits": [Ulimit(name="core", soft=0, hard=0), Ulimit(name="nofile", soft=256, hard=256),
                    Ulimit(name="fsize", soft=32 << 20, hard=32 << 20)],
        "ipc_mode": "private",
        "shm_size": 64 << 20,
        "oom_score_adj": 1000,
        "log_config": LogConfig(type="none"),
        "init": True,
        "auto_remove": False,
        "hostname": "sandbox",
        "device_requests": [DeviceRequest(count=-1, capabilities=[["gpu"]])],
    }
    (container,) = client.made
    calls = [name for name, _ in container.calls]
    # attached before started (no output lost), removed by force at the end, client closed
    assert calls.index("attach") < calls.index("start")
    assert container.calls[0] == ("attach", {"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
    assert ("remove", {"force": True, "v": True}) in container.calls
    assert client.closed


def test_gpu_selection(fake: FakeClient, monkeypatch: pytest.MonkeyPatch) -> None:
    client = fake
    monkeypatch.setenv("GRADER_GPUS", "0,1")
    runner = DockerRunner(sandbox="fresh", image="img")
    assert runner.describe() == {"runner": "docker", "image": "img", "gpus": "0,1", "sandbox": "fresh"}
    assert runner.options() == {"image": "img", "gpus": "0,1", "base_url": None, "sandbox": "fresh", "zygote": None}
    runner.prepare(SandboxSpec(limits=Limits(), gpu=True)).stop()
    runner.prepare(SandboxSpec(limits=Limits(), gpu=False)).stop()
    DockerRunner(sandbox="fresh", image="img", gpus="").prepare(SandboxSpec(limits=Limits(), gpu=True)).stop()
    requests = [kwargs.get("device_requests") for kwargs in client.created]
    assert requests == [[DeviceRequest(device_ids=["0", "1"], capabilities=[["gpu"]])], None, None]
    with pytest.raises(UsageError):
        DockerRunner(sandbox="fresh", image="img", gpus="0;rm -rf /")


def test_create_failure_is_an_infrastructure_error(fake: FakeClient) -> None:
    fake.error = docker.errors.ImageNotFound("no such image")
    with pytest.raises(InfrastructureError, match="grader image build"):
        DockerRunner(sandbox="fresh", image="missing:1").prepare(SandboxSpec(limits=Limits()))
    assert fake.closed


# -- the attach stream, over a socket pair ---------------------------------------------------------------
def test_stream_is_demultiplexed(fake: FakeClient) -> None:
    sandbox = DockerRunner(sandbox="fresh", image="img").prepare(SandboxSpec(limits=Limits()))
    theirs = fake.far_ends[0]
    with sandbox:
        with pytest.raises(SandboxTimeout):
            sandbox.read(timeout=0.05)
        data = _mux(1, b"hello ") + _mux(2, b"warning: x\n") + _mux(1, b"world")
        for i in range(len(data)):  # byte by byte: headers split across reads must still parse
            theirs.sendall(data[i:i + 1])
        got = b""
        while got != b"hello world":
            got += sandbox.read(timeout=5)
        assert "warning: x" in sandbox.stderr_tail()
        sandbox.write(b"\0\0\0\2{}")
        assert theirs.recv(100) == b"\0\0\0\2{}"
        theirs.shutdown(socket.SHUT_WR)  # the container's output ended
        assert sandbox.read(timeout=5) == b""
        with pytest.raises(BrokenPipeError):
            sandbox.write(b"more")
    assert sandbox.exit_info().state == "killed"  # it was "running" when stopped
    sandbox.stop()  # idempotent


def test_exit_states() -> None:
    state = docker_runner._state_info
    assert state({"Status": "running", "Running": True}).state == "running"
    assert state({"Status": "exited", "ExitCode": 0}).state == "exited"
    assert state({"Status": "exited", "ExitCode": 137, "OOMKilled": True}).state == "oom"
    assert state({"Status": "exited", "ExitCode": 137}).state == "killed"
    info = state({"Status": "exited", "ExitCode": 139})
    assert (info.state, info.code, info.detail) == ("exited", 139, "signal 11")


# -- the image inputs --------------------------------------------------------------------------------------
def test_pins_match_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # The sandbox runs what the judge was tested with: the worker's own pins (torch, numpy, pytest).
    assert set(runner_image.PINS) <= set(project["optional-dependencies"]["worker"])


def test_image_tag_follows_its_inputs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GRADER_RUNNER_IMAGE", raising=False)
    monkeypatch.delenv("GRADER_BASE_IMAGE", raising=False)
    for name in ("wire.py", "student_server.py"):
        (tmp_path / name).write_text("# v1\n")
    monkeypatch.setattr(runner_image, "SANDBOX_SOURCE", tmp_path)
    first = runner_image.image_name()
    assert re.fullmatch(r"grader-runner:[0-9a-f]{12}", first)
    (tmp_path / "student_server.py").write_text("# v2\n")
    second = runner_image.image_name()
    assert second != first
    monkeypatch.setenv("GRADER_BASE_IMAGE", "debian:bookworm-slim")
    assert runner_image.image_name() not in (first, second)
    monkeypatch.setenv("GRADER_RUNNER_IMAGE", "registry.example/grader:7")
    assert runner_image.image_name() == "registry.example/grader:7"
    assert runner_image.ensure_image() == "registry.example/grader:7"  # used as is, never built


def test_dockerfile_matches_the_runner() -> None:
    text = runner_image.DOCKERFILE.read_text()
    assert f"--uid {runner_image.SANDBOX_UID}" in text
    assert "ARG BASE_IMAGE=grader-base:bookworm" in text
    assert '"/opt/grader-sandbox/student_server.py"]' in text


def test_docker_available_is_false_without_an_engine(tmp_path: Path) -> None:
    assert docker_available(base_url=f"unix://{tmp_path}/no.sock", timeout=1) is False


# -- the real engine ----------------------------------------------------------------------------------------
engine = pytest.mark.skipif(not docker_available(),
                            reason="no Docker engine answered (start dockerd, or run scripts/ci-docker.sh)")


@pytest.fixture(scope="module")
def runner() -> DockerRunner:
    """A runner of the current image, built first when missing."""
    return DockerRunner(sandbox="fresh", image=runner_image.ensure_image())


def drain(sandbox: DockerSandbox, timeout: float = 60) -> bytes:
    """Everything the sandbox writes to stdout until it ends."""
    deadline = time.monotonic() + timeout
    out = bytearray()
    while chunk := sandbox.read(deadline_left(deadline)):
        out += chunk
    return bytes(out)


def run_python(runner: DockerRunner, code: str, limits: Limits | None = None) -> tuple[dict, DockerSandbox]:
    """Run `code` in a sandbox; its JSON on stdout, and the (stopped) sandbox."""
    spec = SandboxSpec(limits=limits or Limits())
    with runner.prepare(spec, command=[PYTHON, "-I", "-c", code]) as sandbox:
        out = drain(sandbox)
        assert sandbox.exit_info(wait=10).state == "exited", sandbox.stderr_tail()
    return json.loads(out), sandbox


PROBE = r"""
import errno, json, os, resource, socket, subprocess, threading
r = {"ids": [os.getuid(), os.getgid(), os.geteuid(), os.getegid()]}
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
r.update({k: status[k].strip() for k in ("CapEff", "CapPrm", "CapBnd", "NoNewPrivs")})
def attempt(fn):
    try:
        fn()
        return "ok"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, type(exc).__name__)
def write(path, mb=0):
    def go():
        with open(path, "wb") as f:
            f.write(b"x")
            for _ in range(mb):
                f.write(b"\0" * (1 << 20))
    return attempt(go)
r["net"] = attempt(lambda: socket.create_connection(("1.1.1.1", 53), timeout=3).close())
r["dns"] = attempt(lambda: socket.getaddrinfo("deb.debian.org", 80))
r["interfaces"] = sorted(os.listdir("/sys/class/net"))
r["writes"] = {p: write(p) for p in ("/probe", "/etc/probe", "/opt/venv/probe", "/opt/grader-sandbox/wire.py",
                                       "/work/probe", "/tmp/probe", "/dev/shm/probe")}
st = os.statvfs("/work")
r["work_mb"] = st.f_blocks * st.f_frsize >> 20
r["fill"] = [write("/work/" + n, 30) for n in "abc"]
r["big_file"] = write("/dev/shm/big", 40)
for p in ("/work/a", "/work/b", "/work/c", "/dev/shm/big"):
    os.remove(p)
with open("/tmp/x.sh", "w") as f:
    f.write("#!/bin/sh\necho hi\n")
os.chmod("/tmp/x.sh", 0o755)
r["exec_tmp"] = attempt(lambda: subprocess.run(["/tmp/x.sh"], check=True))
r["limits"] = {n: resource.getrlimit(getattr(resource, "RLIMIT_" + n.upper())) for n in ("nofile", "core")}
r["host"] = [p for p in ("/work/main", "/var/run/docker.sock", "/run/docker.sock", "/tmp/bootstrap")
             if os.path.exists(p)]
r["pid1"] = open("/proc/1/cmdline", "rb").read().split(b"\0")[0].decode()
r["setuid"] = subprocess.run(["find", "/", "-xdev", "-perm", "/6000", "-type", "f"], capture_output=True,
                             text=True).stdout.split()
stop, threads = threading.Event(), []
try:
    for _ in range(200):
        t = threading.Thread(target=stop.wait)
        t.start()
        threads.append(t)
except RuntimeError:
    pass
r["threads"] = len(threads)
stop.set()
for t in threads:
    t.join()
print(json.dumps(r))
"""


@engine
def test_sandbox_isolation_from_inside(runner: DockerRunner) -> None:
    r, _ = run_python(runner, PROBE, Limits(pids=32, memory_mb=512))
    assert r["ids"] == [10001] * 4
    assert r["CapEff"] == r["CapPrm"] == r["CapBnd"] == "0000000000000000" and r["NoNewPrivs"] == "1"
    assert r["net"] in ("ENETUNREACH", "EHOSTUNREACH") and r["dns"] != "ok"
    assert r["interfaces"] == ["lo"]
    writable = {path for path, outcome in r["writes"].items() if outcome == "ok"}
    assert writable == {"/work/probe", "/tmp/probe", "/dev/shm/probe"}  # noqa: S108 (in the container)
    assert set(r["writes"].values()) == {"ok", "EROFS"}  # everything else: read-only file system
    assert r["work_mb"] == 64 and r["fill"] == ["ok", "ok", "ENOSPC"]  # the tmpfs cap
    assert r["big_file"] == "EFBIG"  # RLIMIT_FSIZE (32 MB), below /dev/shm's 64 MB
    assert r["exec_tmp"] == "EACCES"  # noexec
    assert r["limits"] == {"nofile": [256, 256], "core": [0, 0]}
    assert r["host"] == []
    assert r["pid1"].endswith("docker-init")
    assert r["setuid"] == []
    assert 20 < r["threads"] < 32  # pids limit 32 counts every thread of every process


@engine
def test_memory_limit_is_an_oom_kill(runner: DockerRunner) -> None:
    hog = "chunks = []\nwhile True:\n    chunks.append(b'x' * (8 << 20))\n"
    spec = SandboxSpec(limits=Limits(memory_mb=128))
    with runner.prepare(spec, command=[PYTHON, "-c", hog]) as sandbox:
        assert drain(sandbox) == b""
        info = sandbox.exit_info(wait=30)
    assert (info.state, info.code) == ("oom", 137)


@engine
def test_exit_code_stderr_and_stop(runner: DockerRunner) -> None:
    code = "import sys\nsys.stderr.write('bad things\\n')\nsys.exit(7)"
    with runner.prepare(SandboxSpec(limits=Limits()), command=[PYTHON, "-c", code]) as sandbox:
        assert drain(sandbox) == b""
        info = sandbox.exit_info(wait=10)
        assert (info.state, info.code) == ("exited", 7)
        assert "bad things" in sandbox.stderr_tail()
    client = docker.from_env()
    try:
        sleeper = runner.prepare(SandboxSpec(limits=Limits()), command=["sleep", "600"])
        assert sleeper.exit_info(wait=0.5).state == "running"
        sleeper.stop()
        assert sleeper.exit_info().state == "killed"
        with pytest.raises(docker.errors.NotFound):
            client.containers.get(sleeper.container.id)
    finally:
        client.close()


@engine
def test_large_streams_both_ways(runner: DockerRunner) -> None:
    echo = ("import sys\nwhile chunk := sys.stdin.buffer.read1(65536):\n"
            "    sys.stdout.buffer.write(chunk)\n    sys.stdout.buffer.flush()\n")
    payload = bytes(range(256)) * (48 * 1024)  # 12 MiB: over the reader's 4 MiB backpressure threshold
    with runner.prepare(SandboxSpec(limits=Limits()), command=[PYTHON, "-c", echo]) as sandbox:
        writer = threading.Thread(target=sandbox.write, args=(payload,))
        writer.start()
        got = bytearray()
        deadline = time.monotonic() + 60
        while len(got) < len(payload):
            got += sandbox.read(deadline_left(deadline))
        writer.join()
        assert got == payload


@engine
def test_student_server_round_trip(runner: DockerRunner) -> None:
    if not (runner_image.SANDBOX_SOURCE / "student_server.py").is_file():
        pytest.skip("worker/sandbox/student_server.py is not written yet")
    client = docker.from_env()
    try:
        sandbox = runner.prepare(SandboxSpec(limits=Limits()))
        with sandbox:
            reader = wire.FrameReader()

            def frame() -> dict[str, Any]:
                deadline = time.monotonic() + 90
                while (message := reader.next_frame()) is None:
                    chunk = sandbox.read(deadline_left(deadline))
                    assert chunk, sandbox.stderr_tail()
                    reader.feed(chunk)
                return message

            ready = frame()
            assert ready["ready"] is True and ready["torch"].startswith("2.13.0")
            sandbox.write(wire.encode_frame({"op": "ping", "id": "p1"}))
            assert frame() == {"ok": True, "value": "pong", "id": "p1"}  # the request's id comes back
            source = "import os\n\ndef whoami(x):\n    return [os.getuid(), os.getcwd(), x * 2]\n"
            sandbox.write(wire.encode_frame({"op": "load", "files": {"solution.py": source},
                                             "module": "solution"}))
            assert frame()["ok"] is True
            sandbox.write(wire.encode_frame({"op": "call", "fn": "whoami", "args": [21], "kwargs": {}}))
            assert frame()["value"] == {"__list__": [10001, "/work", 42]}
        left = client.containers.list(all=True, filters={"id": sandbox.container.id})
        assert left == []
    finally:
        client.close()


@engine
def test_cleanup_orphans_removes_only_old_sandboxes(runner: DockerRunner) -> None:
    token = uuid.uuid4().hex
    mark = f"grader.test={token}"
    client = docker.from_env()
    try:
        orphan = client.containers.create(runner.image, entrypoint=["sleep", "600"], network_mode="none",
                                          labels={"grader": "sandbox", "grader.test": token})
        try:
            assert cleanup_orphans(max_age_minutes=60, extra_labels=(mark,)) == 0
            assert cleanup_orphans(max_age_minutes=0, extra_labels=(mark,)) == 1
            with pytest.raises(docker.errors.NotFound):
                client.containers.get(orphan.id)
        finally:
            try:
                orphan.remove(force=True)
            except docker.errors.NotFound:
                pass
    finally:
        client.close()


@engine
def test_missing_image_is_an_infrastructure_error() -> None:
    with pytest.raises(InfrastructureError, match="missing"):
        DockerRunner(sandbox="fresh", image="grader-runner:no-such-tag").prepare(SandboxSpec(limits=Limits()))
