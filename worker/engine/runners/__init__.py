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
    from worker.engine.errors import InfrastructureError

    try:
        client = image.open_client(timeout=5.0)
    except InfrastructureError as exc:
        return str(exc)
    try:
        client.ping()
        wanted = image_name or image.image_name()
        if not image.has_image(client, wanted):
            return f"the runner image {wanted} is missing"
    except Exception as exc:  # any failure to answer is "not now"; the next check asks again
        return f"the Docker engine did not answer ({type(exc).__name__}: {exc})"
    finally:
        client.close()
    return None
