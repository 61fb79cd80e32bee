"""Shared by the sandbox suites: a probe module loaded into a real sandbox and called over the wire protocol."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from worker.engine.manifest import Limits
from worker.engine.runners import child_cgroup
from worker.engine.runners.base import Runner, Sandbox, SandboxSpec, SandboxTimeout
from worker.sandbox import wire

MODES = ("fresh", "fork")
# Every (runner, sandbox) path a grading can take.
RUNNER_PATHS = [("local", "fork"), ("local", "fresh"), ("docker", "fork"), ("docker", "fresh")]


class Probe:
    """A sandbox with a probe module loaded as solution.py; `call(fn, *args)` runs its fn inside and returns the
    value. Requests go straight to the post-import process, as the judge's would outside a test."""

    def __init__(self, runner: Runner, source: str, limits: Limits | None = None, gpu: bool = False,
                 slots: int = 1) -> None:
        self.mode = runner.sandbox
        self.sandbox: Sandbox = runner.prepare(SandboxSpec(limits=limits or Limits(), gpu=gpu, slots=slots))
        self.sandbox.adopt()  # as the judge does: its stderr is read in the process that talks to it
        self.reader = wire.FrameReader()
        try:
            ready = self._receive(90.0)
            assert ready.get("ready"), ready
            reply = self.request({"op": "load", "files": {"solution.py": source}, "module": "solution"}, 60.0)
            assert reply.get("ok"), reply
        except BaseException:
            self.sandbox.stop()
            raise

    def _receive(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            frame = self.reader.next_frame()
            if frame is not None:
                return frame
            left = deadline - time.monotonic()
            if left <= 0:
                raise SandboxTimeout(f"no reply within {timeout:g} s")
            chunk = self.sandbox.read(timeout=left)
            if not chunk:
                raise EOFError(f"the sandbox ended: {self.sandbox.exit_info(wait=5)} {self.sandbox.stderr_tail()}")
            self.reader.feed(chunk)

    def request(self, message: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        self.sandbox.write(wire.encode_frame(message))
        return self._receive(timeout)

    def reply(self, fn: str, *args: Any, timeout: float = 60.0) -> dict[str, Any]:
        """The raw reply to a call of PROBE.fn(*args)."""
        return self.request({"op": "call", "fn": fn, "args": [_tagged(a) for a in args], "kwargs": {}}, timeout)

    def call(self, fn: str, *args: Any, timeout: float = 60.0) -> Any:
        """PROBE.fn(*args)'s value; AssertionError when it raised."""
        reply = self.reply(fn, *args, timeout=timeout)
        assert reply.get("ok"), f"{fn}() failed in the sandbox: {reply.get('error')}"
        return _plain(reply["value"])

    @property
    def path(self) -> Path | None:
        """The sandbox's private directory on the worker (a fresh local sandbox's; a forked child has none)."""
        sbx = getattr(self.sandbox, "sbx", None)
        return Path(sbx) if sbx is not None else None

    def stop(self) -> None:
        self.sandbox.stop()


def _tagged(value: Any) -> Any:
    """Plain JSON-like values as the wire carries them (lists and dicts are tagged)."""
    if isinstance(value, (list, tuple)):
        return {"__list__": [_tagged(v) for v in value]}
    if isinstance(value, dict):
        return {"__dict__": {str(k): _tagged(v) for k, v in value.items()}}
    return value


def _plain(value: Any) -> Any:
    """Undo the wire's container tagging for plain JSON-like values."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        for tag in ("__list__", "__tuple__"):
            if tag in value:
                return [_plain(v) for v in value[tag]]
        if "__dict__" in value:
            return {k: _plain(v) for k, v in value["__dict__"].items()}
    return value


def children_get_cpu_cgroups() -> bool:
    """Whether a zygote this process starts gives each child a CPU cgroup of its own: memory and pids cgroups are
    possible here, and the CPU hierarchy is writable where this process is (`child_cgroup.container_dirs`)."""
    return child_cgroup.possible() and child_cgroup.CPU in child_cgroup.container_dirs(os.getpid())


def leftover_cgroups(prefix: str) -> tuple[list[Path], list[Path]]:
    """Cgroup folders named `prefix` below this process's own (one per controller), as a maker left them: those of a
    maker that has exited (a judge or worker killed outright), and those of one that lives (this one's parent).
    Made here; the caller removes the living one's."""
    own = child_cgroup.container_dirs(os.getpid())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = [Path(folder) / f"{prefix}{dead.pid}-0" for folder in own.values()]
    living = [Path(folder) / f"{prefix}{os.getppid()}-0" for folder in own.values()]
    for folder in (*left, *living):
        folder.mkdir()
    return left, living


def processes_named(name: str) -> list[int]:
    """Pids of the worker's processes called `name` (as the kernel keeps it: 15 characters at most)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "comm").read_text().strip() == name[:15]:
                found.append(int(proc.name))
        except OSError:
            continue
    return found
