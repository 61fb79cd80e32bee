"""Fixtures for engine tests: whether Docker is usable, with the runner image built once per session."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def docker_ready() -> bool:
    """True when a Docker engine answers and the runner image is (or could be) built.

    In CI (`CI=true`) Docker is required: its absence is a failure, never a silent skip.
    """
    from worker.engine.runners.docker import docker_available

    if not docker_available():
        if os.environ.get("CI"):
            pytest.fail("CI requires a Docker engine, and none answered")
        return False
    from worker.engine.image import ensure_image

    ensure_image()
    return True
