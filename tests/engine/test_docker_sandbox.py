"""The Docker runner's real containers: the isolation a sandbox of the runner image really gets, seen from inside.

Needs a Docker engine (skipped without one; `scripts/ci-docker.sh` starts one). The exact hardening each
container is created with is checked without an engine, in `test_docker_runner.py`.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import docker
import pytest

from worker.engine import image as runner_image
from worker.engine.errors import InfrastructureError
from worker.engine.manifest import Limits
from worker.engine.runners.base import SandboxSpec, deadline_left
from worker.engine.runners.docker import DockerRunner, DockerSandbox, cleanup_orphans, docker_available
from worker.sandbox import wire

PYTHON = "/opt/venv/bin/python"


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
