"""The production runner: one fresh, locked-down container per sandbox, spoken to over Docker's attach stream.

The container has no network, a read-only root, no capabilities, a non-root uid, cgroup limits on memory
(no swap), CPU and pids, and two small tmpfs mounts (/work for the submission, /tmp). Its stdin/stdout are
the student server's frame channel: we attach before starting it, so not a byte of output is lost, and a
reader thread splits Docker's multiplexed stream into protocol bytes (stdout) and a capped stderr tail.
Nothing is logged by Docker (log driver "none"), so a chatty submission cannot fill the host's disk.
"""

from __future__ import annotations

import logging
import os
import signal
import struct
import threading
import time
from pathlib import Path
from typing import Any

import docker
import requests

from worker.engine import image as runner_image
from worker.engine.errors import InfrastructureError
from worker.engine.manifest import Limits
from worker.engine.runners import child_cgroup
from worker.engine.runners.base import (
    CappedBuffer,
    ExitInfo,
    Runner,
    Sandbox,
    SandboxSpec,
    SandboxTimeout,
    Usage,
    deadline_left,
)
from worker.engine.runners.docker_config import LABEL, container_config, memory_cgroup_dirs, parse_gpus
from worker.engine.runners.forked import ForkingRunner, ZygoteHandle
from worker.sandbox import cpuuse

log = logging.getLogger(__name__)
INTERRUPT = "SIGUSR1"  # the judge's interrupt (`Sandbox.interrupt`): a kill event that ends nothing


_HEADER = struct.Struct(">BxxxL")  # Docker's multiplexed stream: stream id, 3 pad bytes, payload length
_POLL = 0.2  # seconds between checks for stop() in the reader thread and for progress in write()
_UNREAD_CAP = 4 * 1024 * 1024  # stop pulling stdout beyond this much unread: backpressure, not host memory
_DOCKER_ERRORS = (docker.errors.DockerException, requests.RequestException)


def engine_problem(image_name: str | None = None, base_url: str | None = None, timeout: float = 3.0) -> str | None:
    """Why this host's Docker engine cannot run sandboxes now (it does not answer a ping within `timeout`
    seconds, or the image `image_name`, where one is named, is missing), or None when it can."""
    try:
        client = runner_image.open_client(base_url, timeout=max(1.0, timeout))
    except Exception as exc:
        return str(exc) if isinstance(exc, InfrastructureError) else f"no Docker engine ({type(exc).__name__})"
    try:
        client.ping()
        if image_name is not None and not runner_image.has_image(client, image_name):
            return f"the runner image {image_name} is missing"
    except Exception as exc:  # any failure to answer is "not now"; whoever asks, asks again later
        return f"the Docker engine did not answer ({type(exc).__name__}: {exc})"
    finally:
        client.close()
    return None


def docker_available(base_url: str | None = None, timeout: float = 3.0) -> bool:
    """True when a Docker engine answers a ping within `timeout` seconds; False on any error."""
    return engine_problem(None, base_url, timeout) is None


class DockerRunner(ForkingRunner, Runner):
    """Starts each sandbox as a new container of the runner image."""

    name = "docker"
    production = True

    def __init__(self, image: str | None = None, gpus: str | None = None,
                 base_url: str | None = None, sandbox: str | None = None, zygote: str | None = None) -> None:
        self.image = image or runner_image.image_name()
        self.gpus = parse_gpus(gpus if gpus is not None else os.environ.get("GRADER_GPUS"))
        self.base_url = base_url
        self._init_forking(sandbox, zygote)

    def options(self) -> dict[str, Any]:
        """Rebuild this runner elsewhere with the same image, GPUs and sandbox mode."""
        return {"image": self.image, "gpus": self.gpus, "base_url": self.base_url, "sandbox": self.sandbox,
                "zygote": self.zygote}

    def describe(self) -> dict[str, Any]:
        """Runner name, image and GPU selection, recorded with each grading run."""
        return {"runner": "docker", "image": self.image, "gpus": self.gpus, "sandbox": self.sandbox}

    def start_zygote(self, spec: SandboxSpec) -> ZygoteHandle:
        """A long-lived zygote container for sandboxes like `spec` (see `docker_zygote`)."""
        from worker.engine.runners.docker_zygote import DockerZygote

        return DockerZygote(self.image, spec, self.gpus if spec.gpu else None, self.base_url)

    def _connect(self) -> docker.DockerClient:
        # One client per sandbox, closed by its stop(): nothing pooled outlives a sandbox, so no socket leaks
        # even when a caller never calls close().
        return runner_image.open_client(self.base_url, timeout=60)

    def prepare(self, spec: SandboxSpec, command: list[str] | None = None, attach: bool = True) -> DockerSandbox:
        """Create, attach to and start a sandbox container (`command` replaces the server: tests only).

        With `attach=False` (a warm pool), the container starts unattached and whoever adopts it attaches.
        In the "fork" sandbox mode a sandbox is a child of the zygote container instead (`command` aside).
        """
        if self.sandbox == "fork" and command is None:
            return self.spawn_child(spec)  # type: ignore[return-value]
        client = self._connect()
        try:
            container = client.containers.create(**container_config(self.image, spec, self.gpus, command))
        except docker.errors.ImageNotFound as exc:
            client.close()
            raise InfrastructureError(f"the runner image {self.image} is missing; build it with "
                                      "`grader image build`") from exc
        except _DOCKER_ERRORS as exc:
            client.close()
            raise InfrastructureError(f"Docker could not create a sandbox: {exc}") from exc
        sandbox = DockerSandbox(client, container, spec.limits)
        if attach:
            sandbox.adopt()  # before start, so the ready frame (and any early stderr) cannot be missed
        try:
            container.start()
        except _DOCKER_ERRORS as exc:
            sandbox.stop()
            raise InfrastructureError(f"Docker could not start a sandbox: {exc}") from exc
        return sandbox


    def prepare_pooled(self, spec: SandboxSpec) -> DockerSandbox:
        """Start a container unattached: the process that adopts it attaches with its own connection."""
        return self.prepare(spec, attach=False)


class DockerSandbox(Sandbox):
    """One sandbox container; frames go through the attach socket."""

    def __init__(self, client: Any, container: Any, limits: Limits) -> None:
        self.client = client
        self.container = container
        self._attached: Any = None
        self._sock: Any = None
        self._owner = os.getpid()  # the process whose Docker client this is
        self._write_timeout = max(5.0, limits.test_timeout)
        self._cond = threading.Condition()
        self._unread = bytearray()
        self._eof = False
        self._stopping = False
        self._stderr = CappedBuffer(max(8192, limits.output_kb * 1024))
        self._write_lock = threading.Lock()
        self._waits = cpuuse.Waits(None)
        self._final: ExitInfo | None = None
        self._reader: threading.Thread | None = None
        self._created = time.time()  # where to start looking in the engine's events for who ended it

    def adopt(self) -> None:
        """Attach to the container and start the reader thread, in the process that talks to it."""
        if self._reader is not None and self._owner == os.getpid():
            return
        if self._owner != os.getpid():
            # Handed over by a pool after a fork: never share the parent's HTTP connection.
            self.client = runner_image.open_client(None, timeout=60)
            self.container = self.client.containers.get(self.container.id)
            self._owner = os.getpid()
        try:
            self._attached = self.container.attach_socket(
                params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
        except _DOCKER_ERRORS as exc:
            raise InfrastructureError(f"Docker could not attach to a sandbox: {exc}") from exc
        # The SDK hands back a SocketIO over the socket; talk to the socket itself (send/recv, timeouts).
        self._sock = getattr(self._attached, "_sock", self._attached)
        self._sock.settimeout(_POLL)
        self._reader = threading.Thread(target=self._pump, name=f"attach-{self.container.id[:12]}", daemon=True)
        self._reader.start()

    # -- the attach stream -------------------------------------------------------------------------------
    def _pump(self) -> None:
        """Reader thread: split the multiplexed stream until it ends or stop() is called."""
        pending = bytearray()
        try:
            while not self._stopping:
                try:
                    chunk = self._sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                pending += chunk
                while len(pending) >= _HEADER.size:
                    stream, size = _HEADER.unpack_from(pending)
                    if len(pending) < _HEADER.size + size:
                        break
                    payload = bytes(pending[_HEADER.size:_HEADER.size + size])
                    del pending[:_HEADER.size + size]
                    if stream == 1:
                        with self._cond:
                            self._unread += payload
                            self._cond.notify_all()
                    else:
                        self._stderr.add(payload)
                with self._cond:
                    while len(self._unread) > _UNREAD_CAP and not self._stopping:
                        self._cond.wait(_POLL)
        finally:
            with self._cond:
                self._eof = True
                self._cond.notify_all()

    def write(self, data: bytes) -> None:
        """Send bytes to the server's stdin; BrokenPipeError once it is gone, SandboxTimeout if it stalls."""
        self.adopt()
        view = memoryview(data)
        deadline = time.monotonic() + self._write_timeout
        with self._write_lock:
            while view:
                if self._stopping or self._eof:
                    raise BrokenPipeError("the sandbox's stdin is closed")
                try:
                    sent = self._sock.send(view)
                except TimeoutError:
                    if deadline_left(deadline) <= 0:
                        raise SandboxTimeout(f"the sandbox took no input for {self._write_timeout:g} s") \
                            from None
                    continue
                view = view[sent:]

    def read(self, timeout: float) -> bytes:
        """Whatever protocol bytes arrived, waiting up to `timeout`; b"" once the stream has ended."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._unread and not self._eof:
                left = deadline_left(deadline)
                if left <= 0:
                    raise SandboxTimeout(f"no output for {timeout:g} s")
                self._cond.wait(left)
            data = bytes(self._unread)
            self._unread.clear()
            self._cond.notify_all()  # wake the reader if it paused on a full buffer
            return data

    def usage(self) -> Usage | None:
        """What the container's processes have had of the CPUs, from its cgroup (v1 or v2) and its threads' /proc
        entries, where this host lets us read them."""
        for directory, usage_file, scale, key, threads_file in (
                (f"/sys/fs/cgroup/cpuacct/docker/{self.container.id}", "cpuacct.usage", 1e9, "", "tasks"),
                (f"/sys/fs/cgroup/system.slice/docker-{self.container.id}.scope", "cpu.stat", 1e6, "usage_usec",
                 "cgroup.threads")):
            try:
                text = Path(directory, usage_file).read_text()
                tids = [int(t) for t in Path(directory, threads_file).read_text().split()]
            except (OSError, ValueError):
                continue
            if key:
                values = dict(line.split() for line in text.splitlines() if line.strip())
                if key not in values:
                    return None
                text = values[key]
            waited, running = self._waits.look(cpuuse.thread_dirs(tids))
            return Usage(int(text) / scale, waited, running)
        return None

    def oom_kills(self) -> int | None:
        """The container's memory cgroup's count, where this host lets us read it."""
        counts = (child_cgroup.oom_kills(folder) for folder in memory_cgroup_dirs(self.container.id))
        return next((count for count in counts if count is not None), None)

    def interrupt(self) -> bool:
        """Send the server the judge's interrupt (the container's init, docker-init, passes it on)."""
        if self._final is not None or self._stopping:
            return False
        try:
            self.container.kill(signal=INTERRUPT)
        except _DOCKER_ERRORS:
            return False
        return True

    def stderr_tail(self) -> str:
        """The last KiBs of the container's stderr."""
        return self._stderr.text()

    # -- lifecycle -----------------------------------------------------------------------------------
    def exit_info(self, wait: float = 0.0) -> ExitInfo:
        """The container's state: running, exited (with code), oom (memory cgroup kill), killed (137), or lost:
        ended from outside (removed, killed or stopped through the engine) or the engine cannot say, which is
        never the student's doing and must not cost them a test."""
        if self._final is not None:
            return self._final
        try:
            if wait > 0:
                try:
                    self.container.wait(timeout=wait)
                except requests.RequestException:
                    pass  # still running when the wait ran out (the SDK reports that as a read timeout)
            self.container.reload()
        except docker.errors.NotFound:
            # stop() records how it ended before it removes the container: gone before that, someone else did.
            self._final = ExitInfo("lost", None, "its container was removed from outside (docker rm)")
            return self._final
        except _DOCKER_ERRORS as exc:
            # The engine is stopping, restarting or overloaded: how the student's process ended is unknown.
            log.warning("cannot inspect sandbox %s: %s", self.container.id[:12], exc)
            return ExitInfo("lost", None, f"the Docker engine could not say how it ended: {exc}")
        info = _state_info(self.container.attrs.get("State", {}))
        if info.state in ("exited", "killed"):
            info = self._killed_from_outside(info)
        if info.state != "running":
            self._final = info
        return info

    def _killed_from_outside(self, info: ExitInfo) -> ExitInfo:
        """`info`, or lost if the engine killed the container at someone's request (docker kill or stop, the
        engine shutting down): a student's code can end its own process with any code, 137 included, but cannot
        ask the engine for a kill. Asked only once a sandbox has ended, so a crash costs one look at the events."""
        try:
            kills = self.client.api.events(
                since=f"{self._created - 60:.6f}", until=f"{time.time() + 0.5:.6f}", decode=True,
                filters={"container": [self.container.id], "event": ["kill"]})
            signals = [str(event.get("Actor", {}).get("Attributes", {}).get("signal", "?")) for event in kills]
            signals = [sent for sent in signals if sent not in (INTERRUPT, str(int(signal.SIGUSR1)))]
        except _DOCKER_ERRORS as exc:
            return ExitInfo("lost", info.code, f"the Docker engine could not say who ended it: {exc}")
        if not signals:
            return info
        return ExitInfo("lost", info.code, f"its container was killed from outside (signal {signals[0]}, through "
                                           "the Docker engine)")

    def stop(self) -> None:
        """Kill and remove the container, close the connection; idempotent and never raises."""
        if self._stopping:
            return
        try:
            if self._final is None:
                # Record how it ended before it is gone, for callers asking after stop().
                info = self.exit_info()
                if info.state == "running":
                    self._final = ExitInfo("killed", None, "stopped by the judge")
        except Exception as exc:
            log.warning("cannot inspect sandbox before stopping it: %s", exc)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        _remove(self.container)
        # Outermost first: the HTTP response wraps the SocketIO, which wraps the socket.
        for closable in (getattr(self._attached, "_response", None), self._attached, self._sock):
            try:
                if closable is not None:
                    closable.close()
            except Exception as exc:
                log.warning("closing the attach stream: %s", exc)
        if self._reader is not None and self._owner == os.getpid():
            self._reader.join(timeout=5)
        try:
            self.client.close()
        except Exception as exc:
            log.warning("closing the Docker client: %s", exc)


def _state_info(state: dict[str, Any]) -> ExitInfo:
    """Map Docker's State object onto ExitInfo."""
    if state.get("Running") or state.get("Status") in ("created", "running", "restarting", "paused"):
        return ExitInfo("running")
    code = state.get("ExitCode")
    if state.get("OOMKilled"):
        return ExitInfo("oom", code, "killed by the memory limit")
    if code == 137:
        return ExitInfo("killed", code, "killed (SIGKILL)")
    detail = state.get("Error") or (f"signal {code - 128}" if isinstance(code, int) and code > 128 else "")
    return ExitInfo("exited", code, detail)


def _remove(container: Any) -> None:
    """Force-remove (SIGKILL, then delete) a container; log instead of raising."""
    try:
        container.remove(force=True, v=True)
    except docker.errors.NotFound:
        pass
    except _DOCKER_ERRORS as exc:
        log.warning("cannot remove sandbox container %s: %s", getattr(container, "id", "?")[:12], exc)


def cleanup_orphans(max_age_minutes: float = 30.0, base_url: str | None = None,
                    extra_labels: tuple[str, ...] = ()) -> int:
    """Remove sandbox containers (label grader=sandbox) created over `max_age_minutes` ago; how many.

    Leftovers of a worker that crashed between prepare() and stop(). The age threshold keeps this safe while
    other workers on the host are grading. `extra_labels` ("key=value") narrow the match (used by tests).
    Zygote containers live as long as their worker, so age says nothing about them: they go when the owner
    their label names is gone (`remove_orphaned_zygotes`), which this also runs.
    """
    from worker.engine.runners.docker_zygote import ROLE_LABEL, remove_orphaned_zygotes

    try:
        client = runner_image.open_client(base_url, timeout=60)
    except InfrastructureError as exc:
        log.warning("orphan cleanup skipped: %s", exc)
        return 0
    removed = 0
    try:
        filters = {"label": [f"{k}={v}" for k, v in LABEL.items()] + list(extra_labels)}
        cutoff = time.time() - max_age_minutes * 60
        for container in client.containers.list(all=True, sparse=True, filters=filters):
            # sparse: the list call's own fields, where Created is a Unix time (no inspect per container)
            if (container.attrs.get("Labels") or {}).get(ROLE_LABEL) == "zygote":
                continue
            if container.attrs.get("Created", 0) <= cutoff:
                _remove(container)
                removed += 1
    except _DOCKER_ERRORS as exc:
        log.warning("orphan cleanup failed: %s", exc)
    finally:
        client.close()
    return removed + (remove_orphaned_zygotes(base_url) if not extra_labels else 0)
