"""Runner registry: `docker` (production) and `local` (development), chosen by name."""

from __future__ import annotations

import sys
from typing import Any

from worker.engine.runners.base import Runner


def make_runner(name: str, **options: Any) -> Runner:
    """Build the runner called `name` with `options` (as returned by `Runner.options()`)."""
    if name == "docker":
        from worker.engine.runners.docker import DockerRunner

        return DockerRunner(**options)
    if name == "local":
        from worker.engine.runners.local import LocalRunner

        return LocalRunner(**options)
    raise ValueError(f"unknown runner {name!r} (docker or local)")


def default_runner_name(announce: bool = True) -> str:
    """'docker' when a Docker engine answers, else 'local' (saying so on stderr)."""
    from worker.engine.runners.docker import docker_available

    if docker_available():
        return "docker"
    if announce:
        print("grader: no Docker engine answered; using the local runner", file=sys.stderr)
    return "local"
