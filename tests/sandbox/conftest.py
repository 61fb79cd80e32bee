"""Fixtures of the local sandbox's isolation suites: the probe in a real sandbox, in both sandbox modes.

`test_sandbox_parity.py` has its own `probe` (parametrized by path: local fork, Docker fresh, Docker fork).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support.isolation_probe import PROBE
from tests.support.sandbox_support import MODES, Probe
from worker.engine.manifest import Limits
from worker.engine.runners.local import LocalRunner


@pytest.fixture(scope="module")
def local_runners() -> Iterator[dict[str, LocalRunner]]:
    """One local runner per sandbox mode for the module (the fork one keeps its zygotes between tests)."""
    runners = {mode: LocalRunner(sandbox=mode) for mode in MODES}
    yield runners
    for runner in runners.values():
        runner.close()


@pytest.fixture(params=MODES)
def probe(request: pytest.FixtureRequest, local_runners: dict[str, LocalRunner]) -> Iterator[Callable[..., Probe]]:
    """Start probes in the test's sandbox mode; every one is stopped at the end of the test."""
    started: list[Probe] = []
    runner = local_runners[request.param]
    if runner.sandbox != request.param:
        pytest.skip(f"the local runner cannot {request.param} sandboxes here")

    def start(limits: Limits | None = None, gpu: bool = False) -> Probe:
        started.append(Probe(runner, PROBE, limits, gpu))
        return started[-1]

    yield start
    for p in started:
        p.stop()

