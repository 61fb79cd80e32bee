"""The production sandbox zygote: one long-lived, hardened container per worker (or per slot, where its children
cannot have cgroups of their own: `worker/engine/judge/sandboxes.py`) that forks sandboxes.

The container is a sandbox container (see `container_config`: no network, read-only root, no capabilities,
uid 10001, cgroup limits, no logs) with exactly two extra privileges, both needed to build namespaces without
any capability on the host:

* a seccomp profile that is Docker's default (less what every sandbox container refuses: `docker_config`) plus
  `unshare`, `mount`, `umount2`, `pivot_root`, `sethostname`, `setdomainname` and `clone` with namespace flags
  (Docker's default allows these only with CAP_SYS_ADMIN);
* `/proc` without Docker's masks (`systempaths=unconfined`), because the kernel lets a user namespace mount a
  fresh /proc only where no part of /proc is hidden by an overmount. Every child mounts its own /proc and masks
  the same paths Docker would, before it loads anything of the student's.

No child keeps either: each loads its own seccomp filter (no namespace, mount, ptrace, bpf, keyctl ...), which
stacks on the container's, and has no capability left. A subverted zygote would hold what a container with
that profile holds: namespaces of its own making inside the container, still without host capabilities, network
or writable root. Its owner's attach connection is its lifeline: when the owner goes, stdin closes, the zygote
kills its children and the container removes itself.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

import docker
from docker.models.containers import _create_container_args

from worker.engine import image as runner_image
from worker.engine.errors import InfrastructureError
from worker.engine.runners import child_cgroup
from worker.engine.runners.base import SandboxSpec
from worker.engine.runners.child_cgroup import zygote_limits
from worker.engine.runners.docker_config import LABEL, container_config, seccomp_profile
from worker.engine.runners.forked import ZygoteHandle, jail_config

log = logging.getLogger(__name__)

ZYGOTE_EXTRA_SYSCALLS = ("unshare", "mount", "umount2", "pivot_root", "sethostname", "setdomainname", "clone")
ROLE_LABEL = "grader.role"
OWNER_LABEL = "grader.owner"
SOCKET_DIR = "/run/zygote"


def owner_id() -> str:
    """This process as an owner label: host name, pid and the pid's start time (pids are reused)."""
    try:
        start = Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        start = "0"
    return f"{socket.gethostname()}:{os.getpid()}:{start}"


def owner_alive(owner: str) -> bool:
    """Whether the process an owner label names still runs on this host (unknown hosts count as alive)."""
    host, _, rest = owner.partition(":")
    pid, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        now = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return False
    return now == start


def zygote_config(image: str, spec: SandboxSpec, gpus: str | None, socket_dir: str) -> dict[str, Any]:
    """`containers.create` keyword arguments for a zygote container (the sandbox's hardening, adjusted)."""
    config = jail_config(spec, ["/opt/venv"], None)  # the server's code is imported before the fork
    command = ["/opt/venv/bin/python", "-I", "-B", "/opt/grader-sandbox/zygote.py",
               "--socket", f"{SOCKET_DIR}/zygote.sock", "--config", json.dumps(config)]
    kwargs = container_config(image, spec, gpus, command)
    memory_mb, pids, cpus = zygote_limits(spec)
    memory = memory_mb << 20
    kwargs.update({
        "name": kwargs["name"].replace("grader-sandbox-", "grader-zygote-"),
        "labels": {**LABEL, ROLE_LABEL: "zygote", OWNER_LABEL: owner_id()},
        "mem_limit": memory, "memswap_limit": memory,
        # Each child's own RLIMIT_NPROC bounds it, and its own pids cgroup where it has one (`child_pids`); this
        # bounds the container: per slot a working and an idle child, and the zygote with its waiters.
        "pids_limit": pids,
        # Every slot's CPUs: each child's own CPU cgroup holds it to its slot's (`child_cgroup`), as a fresh
        # container's --cpus would. A container per slot has one slot's (a zygote's work is its children's).
        "nano_cpus": int(cpus * 1e9),
        # No open-files limit of ours: the zygote takes the engine's (its hard limit, as high as the host lets
        # a container have), far above what its children, each with docker_config.OPEN_FILES, can put in
        # flight with SCM_RIGHTS, so that it can always hand a judge a child (`worker/sandbox/zygote.py`).
        "ulimits": [u for u in kwargs["ulimits"] if u["Name"] != "nofile"],
        "security_opt": ["no-new-privileges", f"seccomp={seccomp_profile(ZYGOTE_EXTRA_SYSCALLS)}"],
        "volumes": {socket_dir: {"bind": SOCKET_DIR, "mode": "rw"}},
        # detach False makes docker-py set StdinOnce: the owner's attach connection is the zygote's lifeline.
        "stdin_open": True, "detach": False,
        "auto_remove": True,
        "oom_score_adj": 500,  # the children say 1000 for themselves: under pressure they go first
    })
    return kwargs


class DockerZygote(ZygoteHandle):
    """A zygote container; its socket lives in a host folder only this process (and the container) can reach."""

    def __init__(self, image: str, spec: SandboxSpec, gpus: str | None, base_url: str | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="grader-zyg-"))
        socket_dir = self.dir / "sock"
        socket_dir.mkdir()
        socket_dir.chmod(0o777)  # the container's uid creates the socket; the parent folder is ours alone
        self.socket_path = str(socket_dir / "zygote.sock")
        self.client = runner_image.open_client(base_url, timeout=60)
        self._lifeline: Any = None
        self.container_id = ""
        try:
            create = _create_container_args({**zygote_config(image, spec, gpus, str(socket_dir)),
                                             "version": self.client.api._version})
            host_config = create.pop("host_config")
            host_config["MaskedPaths"] = []  # systempaths=unconfined: see the module docstring
            host_config["ReadonlyPaths"] = []
            self.container_id = self.client.api.create_container(host_config=host_config, **create)["Id"]
            self._lifeline = self.client.api.attach_socket(self.container_id, params={"stdin": 1, "stream": 1})
            self.client.api.start(self.container_id)
            if child_cgroup.possible():
                first = int(self.client.api.inspect_container(self.container_id)["State"]["Pid"])
                dirs = child_cgroup.container_dirs(first)
                if not all(self.container_id in path for path in dirs.values()):
                    # Docker names a container's cgroups by its id: these are another process's (the engine's
                    # pids are not this process's: a worker in a pid namespace of its own, say).
                    raise OSError(f"the zygote container's cgroups are not visible from this process: {dirs}")
                child_cgroup.write_record(self.dir, child_cgroup.slot_record(dirs, spec))
        except docker.errors.ImageNotFound as exc:
            self.stop()
            raise InfrastructureError(f"the runner image {image} is missing; build it with "
                                      "`grader image build`") from exc
        except (docker.errors.DockerException, OSError) as exc:
            self.stop()
            raise InfrastructureError(f"Docker could not start a sandbox zygote: {exc}") from exc

    def alive(self) -> bool:
        """Whether the container still runs."""
        try:
            return bool(self.client.api.inspect_container(self.container_id)["State"]["Running"])
        except (docker.errors.DockerException, OSError, KeyError):
            return False

    def oom_kills(self) -> int | None:
        """How many processes the container's memory cgroup has killed (cgroup v1 or v2), where readable."""
        for path in (f"/sys/fs/cgroup/memory/docker/{self.container_id}/memory.oom_control",
                     f"/sys/fs/cgroup/system.slice/docker-{self.container_id}.scope/memory.events"):
            try:
                for line in Path(path).read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
            except (OSError, ValueError):
                continue
        return None

    def stop(self) -> None:
        """Close the lifeline, remove the container (its children die with it), remove the socket folder."""
        for closable in (getattr(self._lifeline, "_response", None), self._lifeline):
            try:
                if closable is not None:
                    closable.close()
            except Exception as exc:
                log.warning("closing a zygote's lifeline: %s", exc)
        self._lifeline = None
        if self.container_id:
            try:
                self.client.api.remove_container(self.container_id, force=True)
            except docker.errors.NotFound:
                pass
            except (docker.errors.DockerException, OSError) as exc:
                log.warning("cannot remove zygote container %s: %s", self.container_id[:12], exc)
            self.container_id = ""
        try:
            self.client.close()
        except Exception as exc:
            log.warning("closing the Docker client: %s", exc)
        shutil.rmtree(self.dir, ignore_errors=True)


def remove_orphaned_zygotes(base_url: str | None = None) -> int:
    """Remove zygote containers of this host whose owner process is gone (a worker that was SIGKILLed)."""
    try:
        client = runner_image.open_client(base_url, timeout=60)
    except InfrastructureError:
        return 0
    removed = 0
    try:
        filters = {"label": [f"{k}={v}" for k, v in LABEL.items()] + [f"{ROLE_LABEL}=zygote"]}
        for container in client.containers.list(all=True, filters=filters):
            owner = container.labels.get(OWNER_LABEL, "")
            if not owner_alive(owner):
                try:
                    container.remove(force=True)
                    removed += 1
                except docker.errors.NotFound:
                    pass
    except (docker.errors.DockerException, OSError) as exc:
        log.warning("zygote cleanup failed: %s", exc)
    finally:
        client.close()
    return removed
