"""The Docker runner: the exact hardening of every sandbox container, checked without a Docker engine.

A fake client records the `containers.create` call (the only mock: there is no GPU here) and a socket pair
stands in for the attach stream. What a real container of the runner image lets the student's code do is
checked from inside, in `test_docker_sandbox.py`.
"""

from __future__ import annotations

import re
import socket
import struct
import tomllib
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.types import DeviceRequest, LogConfig, Ulimit

from worker.engine import image as runner_image
from worker.engine.errors import InfrastructureError, UsageError
from worker.engine.manifest import Limits
from worker.engine.runners import docker as docker_runner
from worker.engine.runners.base import SandboxSpec, SandboxTimeout
from worker.engine.runners.docker import DockerRunner, DockerSandbox, docker_available
from worker.engine.runners.docker_config import seccomp_profile

ROOT = Path(__file__).resolve().parents[2]


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
        "security_opt": ["no-new-privileges", f"seccomp={seccomp_profile()}"],
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
