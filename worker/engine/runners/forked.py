"""Sandboxes forked from a sandbox zygote: the judge's side of `worker/sandbox/zygote.py`.

A `ZygoteHandle` is a running zygote (a long-lived container, or a local process) with a Unix socket; `spawn()`
asks it for a confined child and receives, with SCM_RIGHTS, the child's frame channel and stderr. The
connection it was asked on is the child's lease: closing it kills the child's whole pid namespace. Nothing the
zygote or the child sends is trusted: replies are size-capped JSON, and at most two descriptors are taken.
"""

from __future__ import annotations

import json
import os
import select
import socket
import stat
import threading
import time
from abc import ABC, abstractmethod
from typing import Any

from worker.engine.errors import InfrastructureError
from worker.engine.manifest import Limits
from worker.engine.runners import child_cgroup
from worker.engine.runners.base import CappedBuffer, ExitInfo, Sandbox, SandboxSpec, SandboxTimeout, Usage

SPAWN_TIMEOUT = 30.0
READY_TIMEOUT = 120.0
READ_CHUNK = 1 << 20  # bytes read from the child at most per call (a frame may be up to 32 MiB)


def jail_config(spec: SandboxSpec, expose: list[str], uid_range: tuple[int, int] | None) -> dict[str, Any]:
    """The zygote's --config: what every child's confinement needs (see `worker.sandbox.jail.JailConfig`)."""
    limits = spec.limits
    return {"expose": expose, "uid_range": list(uid_range) if uid_range else None, "memory_mb": limits.memory_mb,
            "cpu_seconds": limits.test_timeout, "pids": limits.pids, "gpu": spec.gpu, "idle": spec.slots}


class ZygoteHandle(ABC):
    """A running sandbox zygote that this process owns."""

    socket_path: str

    @abstractmethod
    def alive(self) -> bool:
        """Whether it still runs."""

    @abstractmethod
    def stop(self) -> None:
        """Stop it and every child it forked; idempotent."""

    ready = False

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait until its socket accepts connections (it has imported torch then)."""
        if self.ready:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise InfrastructureError(f"the sandbox zygote exited while starting: {self.last_words()}")
            try:
                if stat.S_ISSOCK(os.stat(self.socket_path).st_mode):
                    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                        probe.connect(self.socket_path)
                    self.ready = True
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise InfrastructureError(f"the sandbox zygote did not start within {timeout:g} s")

    def last_words(self) -> str:
        """Whatever the zygote said on its way out (for error messages)."""
        return ""


def spawn(socket_path: str, limits: Limits, timeout: float = SPAWN_TIMEOUT) -> ForkedSandbox:
    """A fresh confined child from the zygote at `socket_path`; InfrastructureError when none comes."""
    lease = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    fds: list[int] = []
    try:
        lease.settimeout(timeout)
        lease.connect(socket_path)
        lease.sendall(b'{"op": "spawn"}\n')
        data, fds, _flags, _addr = socket.recv_fds(lease, 4096, 2)
        reply = json.loads(data.split(b"\n", 1)[0] or b"null")
        if not isinstance(reply, dict) or not reply.get("ok") or len(fds) != 2:
            raise InfrastructureError(f"the sandbox zygote refused a child: {reply!r}")
        channel = socket.socket(fileno=fds[0])
        if channel.family != socket.AF_UNIX or not stat.S_ISFIFO(os.fstat(fds[1]).st_mode):
            channel.detach()
            raise InfrastructureError("the sandbox zygote sent descriptors of the wrong kind")
        sandbox = ForkedSandbox(lease, channel, fds[1], int(reply.get("pid", 0)), limits)
        fds = []  # the sandbox holds them now: its stop() closes them
        record = child_cgroup.read_record(socket_path)
        if record is not None:
            try:
                sandbox.cgroup = child_cgroup.ChildCgroup(record)
                sandbox.cgroup.join(sandbox.pid)
            except OSError as exc:
                sandbox.stop()
                raise InfrastructureError(f"the sandbox child got no cgroup of its own: {exc}") from exc
        return sandbox
    except (OSError, ValueError, InfrastructureError) as exc:
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
        lease.close()
        if isinstance(exc, InfrastructureError):
            raise
        raise InfrastructureError(f"no sandbox from the zygote at {socket_path}: {exc}") from exc


class ForkedSandbox(Sandbox):
    """One forked child: frames over its socketpair, its life held by the lease."""

    def __init__(self, lease: socket.socket, channel: socket.socket, stderr_fd: int, pid: int,
                 limits: Limits) -> None:
        self.lease = lease
        self.channel = channel
        self.pid = pid
        self._stderr_fd = stderr_fd
        self.stderr = CappedBuffer(max(8192, limits.output_kb * 1024))
        self._write_timeout = max(5.0, limits.test_timeout)
        self._final: ExitInfo | None = None
        self._lease_buffer = b""
        self._usage_asked = 0
        self._stopped = False
        self.cgroup: child_cgroup.ChildCgroup | None = None  # its own, where the host gives it one (`spawn`)
        self._drain: threading.Thread | None = None
        self._owner = os.getpid()
        self.channel.setblocking(False)
        # recv(n) allocates n bytes per call, and most replies are a few hundred: read into one buffer instead.
        self._buffer = memoryview(bytearray(READ_CHUNK))

    def adopt(self) -> None:
        """Drain the child's stderr in the process that talks to it."""
        if self._drain is None or self._owner != os.getpid():
            self._owner = os.getpid()
            self._drain = threading.Thread(target=self._drain_stderr, daemon=True, name=f"stderr-{self.pid}")
            self._drain.start()

    def _drain_stderr(self) -> None:
        while True:
            try:
                chunk = os.read(self._stderr_fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.stderr.add(chunk)

    def write(self, data: bytes) -> None:
        """Send bytes; SandboxTimeout if the child stops reading, BrokenPipeError once it is gone."""
        view = memoryview(data)
        deadline = time.monotonic() + self._write_timeout
        while view:
            left = deadline - time.monotonic()
            _, writable, _ = select.select([], [self.channel], [], max(0.0, left))
            if not writable:
                raise SandboxTimeout(f"the sandbox took no input for {self._write_timeout:g} s")
            try:
                view = view[self.channel.send(view):]
            except BlockingIOError:
                continue

    def read(self, timeout: float) -> bytes:
        """Bytes from the child, b"" once it is gone."""
        ready, _, _ = select.select([self.channel], [], [], timeout)
        if not ready:
            raise SandboxTimeout()
        try:
            return bytes(self._buffer[:self.channel.recv_into(self._buffer)])
        except BlockingIOError:
            return self.read(timeout=0.05)
        except ConnectionResetError:
            return b""

    def _lease_line(self, key: str, wait: float) -> dict[str, Any] | None:
        """The next line on the lease carrying `key` (an exit report ends the child's story: kept aside)."""
        deadline = time.monotonic() + wait
        while True:
            line, sep, rest = self._lease_buffer.partition(b"\n")
            if sep:
                self._lease_buffer = rest
                try:
                    message = json.loads(line)
                except ValueError:
                    message = {}
                if isinstance(message, dict) and "exit" in message and self._final is None:
                    self._final = exit_from_code(message["exit"] if isinstance(message["exit"], int) else -1)
                if isinstance(message, dict) and key in message:
                    return message
                continue
            if self._final is not None:
                return None
            ready, _, _ = select.select([self.lease], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return None
            try:
                chunk = self.lease.recv(4096)
            except OSError:
                chunk = b""
            if not chunk:
                # The zygote reports every child's end before it closes a lease: a lease that closes without
                # one means the zygote itself went (its container killed or stopped, the host out of memory),
                # which nothing a child runs can cause. The child went with it, through no fault of its own.
                self._final = ExitInfo("lost", None, "its sandbox zygote went away")
                return None
            self._lease_buffer = (self._lease_buffer + chunk)[-65536:]

    def exit_info(self, wait: float = 0.0) -> ExitInfo:
        """How the child ended, as its zygote reports on the lease."""
        if self._final is None:
            self._lease_line("exit", wait)
        return self._final or ExitInfo("running")

    def usage(self) -> Usage | None:
        """What the child (all its processes) has had of the CPUs, as its zygote reads it from /proc; None when
        the zygote does not answer within 2 s (a late answer is told from the next one's by its count)."""
        if not self._ask(b'{"op": "usage"}\n'):
            return None
        self._usage_asked += 1
        deadline = time.monotonic() + 2.0
        while (reply := self._lease_line("cpu", max(0.0, deadline - time.monotonic()))) is not None:
            if reply.get("n") == self._usage_asked:
                return usage_from(reply)
        return None

    def oom_kills(self) -> int | None:
        """Its own memory cgroup's count, where it has one."""
        return child_cgroup.oom_kills(self.cgroup.dirs["memory"]) if self.cgroup is not None else None

    def interrupt(self) -> bool:
        """Have the zygote send the child's init (its post-import process) the judge's interrupt."""
        return self._ask(b'{"op": "interrupt"}\n')

    def _ask(self, line: bytes) -> bool:
        """Send the zygote `line` on the lease; False where the child has ended or the lease is closed."""
        if self._final is not None or self._stopped:
            return False
        try:
            self.lease.sendall(line)
        except OSError:
            return False
        return True

    def stderr_tail(self) -> str:
        """The end of what the child wrote to its stderr; once it has ended, read to the end (its last words, a
        traceback say, are in the pipe by the time the zygote reports its exit, not yet read)."""
        if self._final is not None and self._drain is not None and self._owner == os.getpid():
            self._drain.join(timeout=1)  # EOF comes as soon as its namespace is torn down
        return self.stderr.text()

    def release(self) -> None:
        """Close this process's descriptors of a child handed to a forked process, which holds the lease now (the
        child ends when that process closes it or dies); its cgroups stay this process's to remove."""
        self._stopped = True
        self._close_descriptors(wait_for_teardown=False)

    def stop(self) -> None:
        """Kill the child (through its lease) and close every descriptor; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self._final is None:
            info = self.exit_info()
            if info.state == "running":
                self._final = ExitInfo("killed", None, "stopped by the judge")
        self._close_descriptors(wait_for_teardown=True)
        if self.cgroup is not None and self.cgroup.owner == os.getpid():
            # Its processes are gone or going (the zygote kills them when the lease closes): their cgroups go
            # too, or, left by a judge that was killed first, at the keeper's next sweep. (A child leased ahead
            # and handed to a forked judge: the process that leased it removes them after that judge.)
            self.cgroup.remove()


    def _close_descriptors(self, wait_for_teardown: bool) -> None:
        """Close the lease, the channel and stderr (after the drain has read stderr to its end, where asked)."""
        for closable in (self.lease, self.channel):
            try:
                closable.close()
            except OSError:
                pass
        if wait_for_teardown and self._drain is not None and self._owner == os.getpid():
            # This waits for the child's teardown (~5 ms) before the descriptor closes. Not waiting cost more, not
            # less: the next submission's start overlapping the teardown (docs/performance.md, "Tried").
            self._drain.join(timeout=2)
        try:
            os.close(self._stderr_fd)
        except OSError:
            pass


def usage_from(reply: dict[str, Any]) -> Usage | None:
    """A zygote's answer to "usage" (`worker/sandbox/zygote.py`), or None where it carries no CPU seconds."""
    cpu, waited = reply.get("cpu"), reply.get("waited")
    if not isinstance(cpu, (int, float)):
        return None
    return Usage(float(cpu), float(waited) if isinstance(waited, (int, float)) else None, reply.get("running") is True)


def exit_from_code(code: int) -> ExitInfo:
    """ExitInfo from a shell-style exit code (128 + signal for a process killed by one)."""
    if code == 137:
        return ExitInfo("killed", code, "killed (SIGKILL)")
    if code > 128:
        return ExitInfo("exited", code, f"signal {code - 128}")
    return ExitInfo("exited", code)


class ZygotePool:
    """The zygotes a runner started for itself, one per sandbox spec; stopped by `close()`."""

    def __init__(self, start: Any) -> None:
        self._start = start
        self._handles: dict[SandboxSpec, ZygoteHandle] = {}

    def start(self, spec: SandboxSpec) -> ZygoteHandle:
        """A live zygote for `spec`, started now (without waiting for it) if there is none or it died."""
        handle = self._handles.get(spec)
        if handle is None or not handle.alive():
            if handle is not None:
                handle.stop()
            handle = self._start(spec)
            self._handles[spec] = handle
        return handle

    def socket_for(self, spec: SandboxSpec) -> str:
        """The socket of a live, ready zygote for `spec`."""
        handle = self.start(spec)
        handle.wait_ready()
        return handle.socket_path

    def close(self) -> None:
        """Stop every zygote (and so every child) this pool started."""
        handles, self._handles = list(self._handles.values()), {}
        for handle in handles:
            handle.stop()


def sandbox_mode(value: str | None = None) -> str:
    """'fork' (children of a sandbox zygote, the default) or 'fresh' (a new container or process per sandbox)."""
    mode = (value or os.environ.get("GRADER_SANDBOX") or "fork").strip().lower()
    if mode not in ("fork", "fresh"):
        raise InfrastructureError(f"GRADER_SANDBOX must be 'fork' or 'fresh', not {mode!r}")
    return mode


class ForkingRunner:
    """What a runner needs to hand out zygote children (mixed into the Docker and local runners).

    `zygote` is the socket of a zygote someone else owns (the warm judge's); without one the runner starts its
    own, one per sandbox spec, and stops them in `close()`.
    """

    sandbox: str
    zygote: str | None
    _zygotes: ZygotePool

    def _init_forking(self, sandbox: str | None, zygote: str | None) -> None:
        self.sandbox = sandbox_mode(sandbox)
        self.zygote = zygote
        self._zygotes = ZygotePool(self.start_zygote)

    def start_zygote(self, spec: SandboxSpec) -> ZygoteHandle:
        """A new zygote for sandboxes like `spec` (each runner says where it lives)."""
        raise NotImplementedError

    def spawn_child(self, spec: SandboxSpec) -> ForkedSandbox:
        """A fresh child of the zygote for `spec`."""
        return spawn(self.zygote or self._zygotes.socket_for(spec), spec.limits)

    def warm(self, spec: SandboxSpec) -> Sandbox | None:
        """Start the zygote now (it imports torch while the judge does) or, fresh, the first sandbox."""
        if self.sandbox == "fork":
            if self.zygote is None:
                self._zygotes.start(spec)
            return None
        return self.prepare(spec)  # type: ignore[attr-defined]

    def close(self) -> None:
        """Stop the zygotes this runner started for itself."""
        self._zygotes.close()
