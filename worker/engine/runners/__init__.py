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


def unready_reason(name: str, image_name: str | None = None) -> str | None:
    """Why the runner called `name` cannot grade on this host now (its Docker engine does not answer, or the runner
    image `image_name`, the current inputs' unless given, is gone), or None when it can. The local runner needs
    nothing outside this process."""
    if name != "docker":
        return None
    from worker.engine import image
    from worker.engine.runners.docker import engine_problem

    return engine_problem(image_name or image.image_name(), timeout=5.0)
