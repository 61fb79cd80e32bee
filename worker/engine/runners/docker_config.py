"""Every hardening setting of a sandbox container, in one place: what `containers.create` is given."""

from __future__ import annotations

import json
import uuid
from functools import cache
from pathlib import Path
from typing import Any

from docker.types import DeviceRequest, LogConfig, Ulimit

from worker.engine import image as runner_image
from worker.engine.errors import UsageError
from worker.engine.runners.base import SandboxSpec
from worker.sandbox.seccomp_filter import REFUSED

LABEL = {"grader": "sandbox"}
TMPFS_MB = 64  # each of /work and /tmp; tmpfs pages count against the container's memory limit too
# RLIMIT_FSIZE in bytes: below the tmpfs sizes, so no single file can take a whole mount (nor /dev/shm)
FILE_SIZE_LIMIT = 32 * 1024 * 1024
OPEN_FILES = 256
MOBY_PROFILE = Path(__file__).resolve().parents[3] / "docker" / "seccomp" / "moby-default.json"


def memory_cgroup_dirs(container_id: str) -> tuple[str, ...]:
    """Where a container's memory cgroup may be: a cgroup v1 host's folder; a v2 host's, systemd- or cgroupfs-driven."""
    return (f"/sys/fs/cgroup/memory/docker/{container_id}", f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope",
            f"/sys/fs/cgroup/docker/{container_id}")


@cache
def seccomp_profile(extra: tuple[str, ...] = ()) -> str:
    """Docker's default seccomp profile (JSON text) without the calls a forked sandbox's own filter refuses on top
    of it (`worker/sandbox/seccomp_filter.py`), so that a fresh container refuses them too; plus `extra`, allowed
    (the zygote's namespace calls: `docker_zygote`)."""
    profile = json.loads(MOBY_PROFILE.read_text(encoding="utf-8"))
    rules = []
    for rule in profile["syscalls"]:
        names = [name for name in rule["names"] if name not in REFUSED]
        if names:
            rules.append({**rule, "names": names})
    if extra:
        rules.append({"names": list(extra), "action": "SCMP_ACT_ALLOW",
                      "comment": "grader: the sandbox zygote builds each child's namespaces"})
    profile["syscalls"] = rules
    return json.dumps(profile, separators=(",", ":"))


def parse_gpus(value: str | None) -> str | None:
    """Normalise a GPU selection: None/"" (no GPUs), "all", or a comma list of device ids/UUIDs."""
    value = (value or "").strip()
    if not value or value.lower() == "none":
        return None
    if value.lower() == "all":
        return "all"
    ids = [part.strip() for part in value.split(",")]
    if not all(ids) or not all(part.replace("-", "").isalnum() for part in ids):
        raise UsageError(f"GRADER_GPUS must be 'all' or device ids like '0,1', not {value!r}")
    return ",".join(ids)


def gpu_requests(gpus: str | None) -> list[DeviceRequest]:
    """The DeviceRequests giving a container the selected GPUs (via the NVIDIA container toolkit)."""
    if gpus is None:
        return []
    if gpus == "all":
        return [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    return [DeviceRequest(device_ids=gpus.split(","), capabilities=[["gpu"]])]


def container_config(image: str, spec: SandboxSpec, gpus: str | None = None,
                     command: list[str] | None = None) -> dict[str, Any]:
    """Keyword arguments for `containers.create`: every hardening setting of a sandbox lives here."""
    limits = spec.limits
    memory = limits.memory_mb * 1024 * 1024
    threads = str(max(1, int(limits.cpus)))
    config: dict[str, Any] = {
        "image": image,
        "name": f"grader-sandbox-{uuid.uuid4().hex[:12]}",
        "labels": dict(LABEL),
        "user": f"{runner_image.SANDBOX_UID}:{runner_image.SANDBOX_UID}",
        "working_dir": "/work",
        "environment": {
            "HOME": "/work",
            "LANG": "C.UTF-8",
            "PATH": "/opt/venv/bin:/usr/bin:/bin",
            "OMP_NUM_THREADS": threads,  # torch would otherwise start a thread per host core (and pid)
            "MKL_NUM_THREADS": threads,
            "PYTHONDONTWRITEBYTECODE": "1",
            "GRADER_OUTPUT_LIMIT": str(limits.output_kb * 1024),
            "GRADER_CPU_SECONDS": str(limits.test_timeout),
            "GRADER_OWN_PID_NAMESPACE": "1",  # the container's: a test's leftovers may be killed with kill(-1)
        },
        # The frame channel: stdin kept open, no TTY (a TTY would mangle bytes and merge stderr into stdout).
        "stdin_open": True,
        "tty": False,
        "network_mode": "none",
        "read_only": True,
        "tmpfs": {
            "/work": f"rw,size={TMPFS_MB}m,mode=1777,nosuid,nodev,noexec",
            "/tmp": f"rw,size={TMPFS_MB}m,mode=1777,nosuid,nodev,noexec",  # noqa: S108 (the container's)
        },
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges", f"seccomp={seccomp_profile()}"],
        "pids_limit": limits.pids,
        "mem_limit": memory,
        "memswap_limit": memory,  # equal to mem_limit: no swap, so a memory hog is killed, not slowed down
        "nano_cpus": int(limits.cpus * 1e9),
        "ulimits": [
            Ulimit(name="core", soft=0, hard=0),
            Ulimit(name="nofile", soft=OPEN_FILES, hard=OPEN_FILES),
            Ulimit(name="fsize", soft=FILE_SIZE_LIMIT, hard=FILE_SIZE_LIMIT),
        ],
        "ipc_mode": "private",
        "shm_size": TMPFS_MB * 1024 * 1024,
        # Under host memory pressure the kernel kills sandboxes before the worker or the database.
        "oom_score_adj": 1000,
        "log_config": LogConfig(type=LogConfig.types.NONE),
        # A real PID 1 (docker-init): it reaps the student's orphaned children, which would otherwise hold
        # pids of the pids limit as zombies, and forwards signals the server, as PID 1, would ignore.
        "init": True,
        "auto_remove": False,  # stop() removes it; auto-removal would race exit_info()'s inspect
        "hostname": "sandbox",
    }
    if command:
        config["entrypoint"] = list(command)
    if spec.gpu and gpus:
        config["device_requests"] = gpu_requests(gpus)
    return config
