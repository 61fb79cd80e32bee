"""A sandbox lost on our side — its zygote killed mid-test, as `docker kill`, a Docker restart or the host's OOM
killer would — is our failure: the grading raises InfrastructureError (the worker runs it again), and the
student's test is never recorded as having crashed. The next grading on the same warm judge gets a new zygote."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.proctree import alive, command, descendants
from worker.engine.errors import InfrastructureError
from worker.engine.grade import grade
from worker.engine.judge.launch import WarmJudge
from worker.engine.manifest import get_assignment
from worker.engine.runners import make_runner
from worker.engine.runners.base import Runner

REPO = Path(__file__).resolve().parents[2]
REFERENCE = (REPO / "reference_tests" / "autograd" / "reference" / "solution.py").read_text()
# The reference solution, whose accumulated_gradient() sleeps at any point but 2.0: in the run's last test (the
# zeroing deliverable's after-due-date test, at random points), after which no test needs a sandbox again.
SLOW = REFERENCE + '''

import time as _time
_accumulated_gradient = accumulated_gradient


def accumulated_gradient(f, x, times):
    if x != 2.0:
        _time.sleep(25)
    return _accumulated_gradient(f, x, times)
'''


def _sleeping(pids: list[int]) -> bool:
    """Whether one of `pids` sleeps in nanosleep (the slow test is under way)."""
    for pid in pids:
        try:
            if "nanosleep" in Path(f"/proc/{pid}/wchan").read_text():
                return True
        except OSError:
            pass
    return False


def _local_zygote_tree() -> list[int]:
    """The local sandbox zygotes below this process, and everything below them."""
    roots = [pid for pid in descendants(os.getpid()) if "zygote.py --socket" in command(pid)]
    return [pid for root in roots for pid in (root, *descendants(root))]


def _lose_local() -> None:
    """SIGKILL every process of the zygotes' trees at once, as a container kill does."""
    for pid in _local_zygote_tree():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _docker_zygotes() -> list:  # type: ignore[type-arg]
    """The zygote containers that a process below this one started (never another test's or worker's)."""
    import docker

    from worker.engine.runners.docker_zygote import OWNER_LABEL, ROLE_LABEL

    ours = {str(pid) for pid in descendants(os.getpid())}
    containers = docker.from_env().containers.list(filters={"label": f"{ROLE_LABEL}=zygote"})
    # The owner label is "host:pid:start time" of the process that started the container.
    return [c for c in containers if [*c.labels.get(OWNER_LABEL, "").split(":"), "", ""][1] in ours]


def _docker_zygote_tree() -> list[int]:
    pids: list[int] = []
    for container in _docker_zygotes():
        top = container.top(ps_args="-o pid")
        pids += [int(row[0]) for row in top.get("Processes") or []]
    return pids


def _lose_docker() -> None:
    for container in _docker_zygotes():
        container.kill()


def _lost_mid_test(runner: Runner, judge: WarmJudge | None, tree: Callable[[], list[int]],
                   lose: Callable[[], None], wait: float) -> object:
    """Grade the SLOW solution; once one of `tree()`'s processes sleeps in the student's code, `lose()` the
    sandbox; what the grading came to (a result or the exception it raised)."""
    assignment = get_assignment("autograd")
    outcome: list[object] = []

    def slow_grading() -> None:
        try:
            outcome.append(grade(assignment, {"solution.py": SLOW.encode()}, runner, judge=judge))
        except BaseException as exc:  # looked at in the test's thread
            outcome.append(exc)

    thread = threading.Thread(target=slow_grading)
    thread.start()
    deadline = time.monotonic() + wait
    while not _sleeping(tree()):
        assert time.monotonic() < deadline and thread.is_alive(), outcome
        time.sleep(0.05)
    lose()
    thread.join(timeout=wait)
    assert not thread.is_alive()
    [result] = outcome
    return result


@pytest.mark.parametrize("runner_name", ["local", "docker"])
def test_a_sandbox_whose_zygote_goes_mid_test_is_our_failure_not_the_students(
        runner_name: str, docker_ready: bool) -> None:
    """Kill the sandbox zygote (its whole tree, or its container) while a test waits in the student's code: does
    the grading fail as infrastructure, with no test recorded as crashed, and does the next grading on the same
    judge score in full?"""
    if runner_name == "docker" and not docker_ready:
        pytest.skip("no Docker engine")
    tree, lose = (_docker_zygote_tree, _lose_docker) if runner_name == "docker" else (_local_zygote_tree, _lose_local)
    assignment = get_assignment("autograd")
    runner = make_runner(runner_name, sandbox="fork")
    judge = WarmJudge()
    try:
        assert grade(assignment, {"solution.py": REFERENCE.encode()}, runner, judge=judge).score == 100.0
        lost: list[int] = []

        def lose_noting_the_tree() -> None:
            lost.extend(tree())
            lose()

        result = _lost_mid_test(runner, judge, tree, lose_noting_the_tree, 60)
        assert isinstance(result, InfrastructureError), result
        assert "sandbox was lost" in str(result) and "zygote went away" in str(result)
        assert not any(alive(pid) for pid in lost if runner_name == "local")
        again = grade(assignment, {"solution.py": REFERENCE.encode()}, runner, judge=judge)
        assert again.score == 100.0, again.message
    finally:
        judge.close()
        runner.close()


def _fresh_sandboxes(since: float) -> list:  # type: ignore[type-arg]
    """The fresh sandbox containers running now that were created after `since` (this test's)."""
    import docker

    from worker.engine.runners.docker_config import LABEL

    [(key, value)] = LABEL.items()
    containers = docker.from_env().containers.list(filters={"label": f"{key}={value}"})
    return [c for c in containers if c.attrs["Created"] and _epoch(c.attrs["Created"]) >= since - 1]


def _epoch(stamp: str) -> float:
    """An RFC 3339 time of the engine's (nanoseconds and all) as epoch seconds."""
    from datetime import datetime

    day, _, rest = stamp.rstrip("Z").partition("T")
    clock, _, fraction = rest.partition(".")
    return datetime.fromisoformat(f"{day}T{clock}+00:00").timestamp() + float(f"0.{fraction or 0}")


@pytest.mark.parametrize("how", ["kill", "remove"])
def test_a_fresh_sandbox_container_ended_from_outside_mid_test_is_our_failure_not_the_students(
        how: str, docker_ready: bool) -> None:
    """On the fresh-container path, kill (`docker kill`, as a Docker restart does) or force-remove (`docker rm
    -f`) the sandbox container while a test waits in the student's code: does the grading fail as
    infrastructure, with no test recorded as crashed, where it used to cost the student that test (and every one
    after it in the sandbox) as a crash?"""
    if not docker_ready:
        pytest.skip("no Docker engine")
    runner = make_runner("docker", sandbox="fresh")
    started = time.time()

    def pids() -> list[int]:
        return [int(row[0]) for container in _fresh_sandboxes(started)
                for row in container.top(ps_args="-o pid").get("Processes") or []]

    def lose() -> None:
        for container in _fresh_sandboxes(started):
            container.kill() if how == "kill" else container.remove(force=True)

    try:
        result = _lost_mid_test(runner, None, pids, lose, 120)
        assert isinstance(result, InfrastructureError), result
        # `docker rm -f` kills first: the judge may look while the container is killed but not yet removed.
        assert "sandbox was lost" in str(result) and "from outside" in str(result), result
    finally:
        runner.close()
