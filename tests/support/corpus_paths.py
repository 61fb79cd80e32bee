"""The grading paths both corpora go through, each held as a worker slot holds it: a runner and a warm judge.

* `local`: the local runner's forked sandbox (Docker-less hosts);
* `docker`: the Docker runner's forked sandbox, its zygote in a long-lived container (the production default);
* `docker-fresh`: a fresh container per sandbox (`GRADER_SANDBOX=fresh`), the parity baseline.

A warm judge is what a worker grades with, so the corpora's verdicts are those a student would get; it also
means every attack is followed by the next file on the same judge and sandbox zygote, as on a real slot. (A
cold judge per file cost 5-8 s of imports each; `grader grade` and `tests/engine/test_engine_cli.py` still
exercise that path.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from worker.engine.grade import grade
from worker.engine.judge.launch import WarmJudge
from worker.engine.manifest import get_assignment
from worker.engine.result import GradeResult
from worker.engine.runners import make_runner
from worker.engine.runners.base import Runner

PATHS = ["local", "docker", "docker-fresh"]


@dataclass
class GradingPath:
    """One path's runner and warm judge; `grade` grades a submission of the autograd assignment through them."""

    name: str
    runner: Runner
    judge: WarmJudge = field(default_factory=WarmJudge)

    def grade(self, files: dict[str, bytes]) -> GradeResult:
        return grade(get_assignment("autograd"), files, self.runner, judge=self.judge)

    def close(self) -> None:
        """Stop the judge (its sandbox zygotes and their children go with it) and the runner."""
        try:
            self.judge.close()
        finally:
            self.runner.close()


def _build(name: str, request: pytest.FixtureRequest) -> GradingPath:
    runner_name, _, sandbox = name.partition("-")
    if runner_name == "docker":
        try:
            import worker.engine.runners.docker  # noqa: F401
        except ImportError:
            if os.environ.get("CI"):
                raise
            pytest.skip("the docker runner's module is not installed here")
        if not request.getfixturevalue("docker_ready"):  # in CI this fails instead of skipping
            pytest.skip("the docker runner is not available here (no Docker engine answered)")
    return GradingPath(name, make_runner(runner_name, sandbox=sandbox or "fork"))


class GradingPaths(dict[str, GradingPath]):
    """Paths made when first asked for (a Docker-less machine skips only the docker ones)."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        super().__init__()
        self.request = request

    def __missing__(self, name: str) -> GradingPath:
        self[name] = _build(name, self.request)
        return self[name]

    def close(self) -> None:
        """Close every path made so far (one asked for again is made afresh)."""
        while self:
            self.popitem()[1].close()


def grading_paths(request: pytest.FixtureRequest) -> Iterator[GradingPaths]:
    """Body of a module-scoped fixture: the paths, all closed at the end of the module."""
    paths = GradingPaths(request)
    try:
        yield paths
    finally:
        paths.close()
