"""What a grading may leave on the worker's machine, as the hostile suite looks for it: processes living in a
sandbox's mounts or running as a student's uid, and sandbox containers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker

from worker.engine.runners.docker import LABEL, docker_available
from worker.engine.runners.local import SANDBOX_UIDS as LOCAL_SANDBOX_UIDS

DOCKER_STUDENT_UID = 10001  # the runner image's student; the local runner draws uids from LOCAL_SANDBOX_UIDS


def is_sandbox_uid(uid: int) -> bool:
    """Whether `uid` belongs to student code (a local sandbox's or the runner image's)."""
    return uid in LOCAL_SANDBOX_UIDS or uid == DOCKER_STUDENT_UID


def _procs() -> Iterator[Path]:
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            yield proc


def processes_mentioning(token: str) -> list[str]:
    """Processes (any uid) whose mount table mentions `token`: those living in one of our sandboxes."""
    found = []
    for proc in _procs():
        try:
            if token in (proc / "mountinfo").read_text():
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ")[:200]
                found.append(f"{proc.name} {command!r}")
        except OSError:
            continue
    return found


def sandbox_uid_processes() -> dict[int, str]:
    """{pid: command line} of every process on this machine that runs as a sandbox uid."""
    found = {}
    for proc in _procs():
        try:
            uid = int((proc / "status").read_text().split("Uid:")[1].split()[0])
            if is_sandbox_uid(uid):
                found[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
        except (OSError, IndexError, ValueError):
            continue
    return found


def sandbox_containers() -> set[str]:
    """Ids of containers labelled grader=sandbox (empty where Docker is unavailable)."""
    if not docker_available():
        return set()
    client = docker.from_env()
    try:
        filters = {"label": [f"{k}={v}" for k, v in LABEL.items()]}
        return {c.id for c in client.containers.list(all=True, sparse=True, filters=filters)}
    finally:
        client.close()


def wait_until(check: Any, timeout: float) -> Any:
    """Poll `check()` until it returns something falsy or `timeout` passes; return its last value."""
    deadline = time.monotonic() + timeout
    value = check()
    while value and time.monotonic() < deadline:
        time.sleep(0.5)
        value = check()
    return value
