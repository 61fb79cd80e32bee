"""The local runner: the student server in Linux namespaces on this host. For development and Docker-less hosts.

Where the kernel allows, each sandbox gets new network, pid, mount, IPC and UTS namespaces and a private root
built from read-only bind mounts of the system and Python directories, so the repository, the reference tests and
the service's data are simply not there. As root each sandbox runs under a uid of its own (so the process limit
and signals stay within one sandbox) with no capabilities; otherwise a
user namespace stands in. Resource limits come from rlimits, and where the host allows it (root, cgroup v1) each
sandbox, forked (`local_zygote.py`) or fresh, is also in memory, pids and CPU cgroups of its own, one slot's share
(`child_cgroup.child_limits`): together its processes cannot fill the host's memory or take more than its CPUs. Both
load the seccomp filter of a zygote's child (`worker/sandbox/seccomp_filter.py`) and are named "sandbox" in a UTS
namespace of their own. It is not the production sandbox: the Docker runner is.
"""

from __future__ import annotations

import logging
import os
import resource
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from functools import cache
from pathlib import Path
from typing import Any

from worker.engine.errors import InfrastructureError
from worker.engine.runners import child_cgroup
from worker.engine.runners.base import (
    SANDBOX_FILES,
    SANDBOX_SOURCE,
    CappedBuffer,
    ExitInfo,
    Runner,
    Sandbox,
    SandboxSpec,
    SandboxTimeout,
    Usage,
)
from worker.engine.runners.forked import ForkingRunner
from worker.engine.runners.local_launch import LAUNCH, without_unshare_line
from worker.engine.runners.local_zygote import LocalZygote
from worker.sandbox import cpuuse

log = logging.getLogger(__name__)
SANDBOX_UIDS = range(1_000_000, 2_000_000)
_warned = False


@cache
def namespace_mode() -> str:
    """'root' (namespaces + uid drop), 'user' (unprivileged user namespace) or 'none', probed once."""
    base = ["unshare", "--net", "--pid", "--fork", "--mount", "--ipc", "--uts", "--kill-child"]
    probe = "mount -t tmpfs none /mnt 2>/dev/null || mount -t tmpfs none /tmp"
    candidates = [("root", base)] if os.geteuid() == 0 else []
    candidates.append(("user", ["unshare", "--user", "--map-root-user", *base[1:]]))
    for mode, cmd in candidates:
        try:
            done = subprocess.run([*cmd, "sh", "-c", probe], capture_output=True, timeout=20, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return mode
    return "none"


def _python_dirs() -> list[str]:
    """Directories the student's Python needs: the interpreter's prefix and the environment's."""
    dirs = {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix),
            os.path.dirname(os.path.realpath(sys.executable))}
    top_level = {"/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/etc"}
    return sorted(d for d in dirs if not any(d == t or d.startswith(t + "/") for t in top_level))


class LocalRunner(ForkingRunner, Runner):
    """Starts student servers as local processes, isolated as well as this kernel and user allow."""

    name = "local"

    def __init__(self, python: str | None = None, uid: int | None = None, sandbox: str | None = None,
                 zygote: str | None = None) -> None:
        self.python = python or sys.executable
        self.uid = uid  # None: a fresh uid per sandbox (as root), else this one for all
        # Forking needs namespaces; without them each sandbox is a fresh process, as before.
        self._init_forking(sandbox if namespace_mode() != "none" else "fresh", zygote)

    def options(self) -> dict[str, Any]:
        """Rebuild this runner in the judge process."""
        return {"python": self.python, "uid": self.uid, "sandbox": self.sandbox, "zygote": self.zygote}

    def start_zygote(self, spec: SandboxSpec) -> LocalZygote:
        """A sandbox zygote process for sandboxes like `spec` (its children confine themselves)."""
        uid_range = (SANDBOX_UIDS.start, SANDBOX_UIDS.stop) if namespace_mode() == "root" else None
        if self.uid is not None and uid_range is not None:
            uid_range = (self.uid, self.uid + 1)
        expose = _python_dirs()
        if spec.gpu:  # the driver's libraries may live outside the system directories (e.g. /usr/local/nvidia)
            expose += [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d.startswith("/")]
        return LocalZygote(spec, self.python, sandbox_env(spec), expose, uid_range)

    def _sandbox_uid(self) -> int:
        """The uid a new sandbox runs as: 0 means "no uid change" (not root)."""
        if os.geteuid() != 0:
            return 0
        if self.uid is not None:
            return self.uid
        # A uid no account and no other live sandbox uses: RLIMIT_NPROC counts per uid, and processes of one
        # uid may signal each other, so sharing one would let a fork bomb or a daemon reach other sandboxes.
        return SANDBOX_UIDS.start + secrets.randbelow(len(SANDBOX_UIDS))

    def gpu_capable(self) -> bool:
        """Whether this host has NVIDIA devices to pass through. The sandbox's GPU mode is decided before the
        judge can ask torch, and it raises the data limit by 8 GB and exposes /sys: never on a host without a GPU.
        """
        return Path("/dev/nvidiactl").exists() or any(Path("/dev").glob("nvidia[0-9]*"))

    def describe(self) -> dict[str, Any]:
        """Runner facts recorded with each grading run."""
        return {"runner": "local", "isolation": namespace_mode(), "sandbox": self.sandbox, "python": self.python}

    def prepare(self, spec: SandboxSpec) -> Sandbox:
        """A forked child of a sandbox zygote, or (sandbox "fresh") a student server in a new private folder."""
        global _warned
        mode = namespace_mode()
        if not _warned:
            _warned = True
            log.warning("local runner: student code runs on this host with %s isolation; this is not the "
                        "production sandbox (use the docker runner)", mode)
        if self.sandbox == "fork":
            return self.spawn_child(spec)
        sbx = Path(tempfile.mkdtemp(prefix="grader-sbx-"))
        try:
            return LocalSandbox(sbx, spec, self.python, self._sandbox_uid() if mode == "root" else 0, mode)
        except BaseException:
            shutil.rmtree(sbx, ignore_errors=True)
            raise


class LocalSandbox(Sandbox):
    """A student server process and its private directory."""

    def __init__(self, sbx: Path, spec: SandboxSpec, python: str, uid: int, mode: str) -> None:
        self.sbx = sbx
        self.stderr = CappedBuffer(8192)
        self.write_timeout = max(5.0, spec.limits.test_timeout)
        self._stopped = False
        self._namespaced = mode != "none"  # the server is then unshare's child, not the process started here
        server = sbx / "server"
        work = sbx / "work"
        server.mkdir()
        work.mkdir(mode=0o700)  # used as the working directory only where no namespaces are available
        self.uid = uid
        for name in SANDBOX_FILES:
            shutil.copy(SANDBOX_SOURCE / name, server / name)
            (server / name).chmod(0o444)
        env = {**sandbox_env(spec),
               "GRADER_CPU_SECONDS": str(spec.limits.test_timeout), "GRADER_SECCOMP": "1"}
        if mode == "none":
            argv = [python, "-I", "-B", str(server / "student_server.py")]
            cwd: Path | None = work
        else:
            prefix = ["unshare", "--net", "--pid", "--fork", "--mount", "--ipc", "--uts", "--kill-child"]
            if mode == "user":
                prefix = ["unshare", "--user", "--map-root-user", *prefix[1:]]
            argv = [*prefix, "sh", "-c", LAUNCH, "grader-launch", str(sbx), python, str(uid),
                    "1" if spec.gpu else "0", *_python_dirs()]
            cwd = None
        self.cgroup = child_cgroup.local_cgroup(child_cgroup.child_limits(spec), child_cgroup.FRESH_PREFIX,
                                                "local sandbox")
        cgroup = self.cgroup

        def before_exec() -> None:  # in the child: what it starts inherits its limits and cgroups
            _apply_rlimits(spec, uid)
            if cgroup is not None:
                cgroup.move(os.getpid())

        try:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, env=env,
                start_new_session=True, preexec_fn=before_exec,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            if cgroup is not None:
                cgroup.remove()
            raise InfrastructureError(f"could not start the local sandbox: {exc}") from exc
        assert self.proc.stdout is not None and self.proc.stderr is not None
        os.set_blocking(self.proc.stdout.fileno(), False)
        self._drain: threading.Thread | None = None
        self._owner = os.getpid()
        self._parent = os.getpid()  # only this process can reap the server and read its exit code
        self._waits = cpuuse.Waits(cpuuse.Priority.own())

    def adopt(self) -> None:
        """Start draining stderr in the process that uses the sandbox (threads do not survive a fork)."""
        if self._drain is None or self._owner != os.getpid():
            self._owner = os.getpid()
            self._drain = threading.Thread(target=self._drain_stderr, daemon=True)
            self._drain.start()

    def release(self) -> None:
        """Close this process's ends of the pipes; the process that adopted the sandbox keeps its own."""
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def _drain_stderr(self) -> None:
        stream = self.proc.stderr
        assert stream is not None
        for chunk in iter(lambda: stream.read1(65536), b""):
            self.stderr.add(chunk)

    def write(self, data: bytes) -> None:
        """Send bytes to the server's stdin; SandboxTimeout if it stops reading (it may, on purpose)."""
        self.adopt()
        assert self.proc.stdin is not None
        fd = self.proc.stdin.fileno()
        os.set_blocking(fd, False)
        view = memoryview(data)
        deadline = time.monotonic() + self.write_timeout
        while view:
            left = deadline - time.monotonic()
            _, writable, _ = select.select([], [fd], [], max(0.0, left))
            if not writable:
                raise SandboxTimeout(f"the sandbox took no input for {self.write_timeout:g} s")
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                continue

    def read(self, timeout: float) -> bytes:
        """Bytes from the server's stdout, b"" at its end."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            raise SandboxTimeout()
        try:
            return os.read(fd, 1 << 20)
        except BlockingIOError:
            return self.read(timeout=0.05)

    def exit_info(self, wait: float = 0.0) -> ExitInfo:
        """Whether and how the server ended."""
        if self._parent != os.getpid():
            return self._exit_info_from_afar(wait)
        try:
            code = self.proc.wait(timeout=wait) if wait else self.proc.poll()
        except subprocess.TimeoutExpired:
            code = None
        if code is None:
            return ExitInfo("running")
        if code == 1 and self._namespaced and self._sigkill_lost():
            code = -signal.SIGKILL
        if code < 0:
            return ExitInfo("killed", code, signal.Signals(-code).name)
        if code == 137:  # (a shell between unshare and the server would report it so)
            return ExitInfo("killed", code, "SIGKILL")
        return ExitInfo("exited", code)

    def _exit_info_from_afar(self, wait: float) -> ExitInfo:
        """In a process that adopted the sandbox from a pool: only the parent can reap it and see its code."""
        deadline = time.monotonic() + wait
        while True:
            try:
                state = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                state = "Z"
            if state in ("Z", "X"):
                return ExitInfo("exited", None)
            if time.monotonic() >= deadline:
                return ExitInfo("running")
            time.sleep(0.05)

    def usage(self) -> Usage | None:
        """What the server and everything it started have had of the CPUs, from this host's /proc."""
        if self.exit_info().state != "running":
            return None  # (its pid may name another process by now)
        cpu, threads = cpuuse.tree(self.proc.pid)
        waited, running = self._waits.look(threads)
        return Usage(cpu, waited, running)

    def oom_kills(self) -> int | None:
        """Its own memory cgroup's count, where it has one."""
        return child_cgroup.oom_kills(self.cgroup.dirs["memory"]) if self.cgroup is not None else None

    def interrupt(self) -> bool:
        """Send the server (its pid namespace's init: unshare's only child) the judge's interrupt. Not where it
        has no namespaces: there it could not end what the test left (`leftovers.py`), so the sandbox goes."""
        if not self._namespaced or self._stopped or self.exit_info().state != "running":
            return False  # (a server that ended: its pid may name another process by now)
        pid = self.proc.pid
        try:
            children = cpuuse.task_children(f"/proc/{pid}/task/{pid}")
            if len(children) != 1:
                return False
            os.kill(children[0], signal.SIGUSR1)
        except (OSError, ValueError):
            return False
        return True

    def _sigkill_lost(self) -> bool:
        """Whether unshare said it could not pass on the SIGKILL that ended the server (`local_launch`), once the
        sandbox's stderr has been read to its end (its namespace is gone: it ends at once)."""
        if self._drain is not None and self._owner == os.getpid():
            self._drain.join(timeout=1.0)
        return without_unshare_line(self.stderr.text())[1]

    def stderr_tail(self) -> str:
        """The end of what the student process wrote to stderr, without unshare's own line (`_sigkill_lost`)."""
        text = self.stderr.text()
        return without_unshare_line(text)[0] if self._namespaced else text

    def stop(self) -> None:
        """Kill the whole process group (the pid namespace dies with its first process); remove the files."""
        if self._stopped:
            return
        self._stopped = True
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self._parent == os.getpid():
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log.error("local sandbox %s did not die", self.proc.pid)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        if self._drain is not None and self._owner == os.getpid():
            self._drain.join(timeout=2)
        if self.cgroup is not None and not self.cgroup.remove():
            log.error("local sandbox %s: its cgroups %s are still in use", self.proc.pid, self.cgroup.dirs)
        _remove_tree(self.sbx)


def sandbox_env(spec: SandboxSpec) -> dict[str, str]:
    """The environment student code starts with (nothing of the worker's own)."""
    limits = spec.limits
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/work", "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": str(max(1, int(limits.cpus))), "PYTHONHASHSEED": "0",
        "GRADER_OUTPUT_LIMIT": str(limits.output_kb * 1024),
    }
    if spec.gpu:
        # The driver's libraries may live outside the default search path (e.g. /usr/local/nvidia).
        env.update({k: v for k, v in os.environ.items()
                    if k in ("CUDA_VISIBLE_DEVICES", "LD_LIBRARY_PATH") or k.startswith("NVIDIA_")})
    else:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def _apply_rlimits(spec: SandboxSpec, uid: int) -> None:
    """In the child before exec: resource limits that the sandbox cannot raise again."""
    limits = spec.limits
    mb = 1024 * 1024
    cpu = int(limits.run_timeout) + 5
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    # A CUDA context costs the host several GB of driver allocations before the student allocates anything.
    data = (limits.memory_mb + (8192 if spec.gpu else 0)) * mb
    # RLIMIT_DATA counts heap and private anonymous mappings, which is where a memory bomb lands. No RLIMIT_AS:
    # a CUDA build of torch maps GBs of address space at import, even when the sandbox gets no GPU.
    resource.setrlimit(resource.RLIMIT_DATA, (data, data))
    # Below the 64 MiB work tmpfs, as in the Docker runner, so the limit itself is what a big write meets.
    resource.setrlimit(resource.RLIMIT_FSIZE, (32 * mb, 32 * mb))
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if uid:
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.pids, limits.pids))


def _remove_tree(path: Path) -> None:
    for _ in range(3):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            return
        time.sleep(0.1)
    log.error("could not remove sandbox directory %s", path)
