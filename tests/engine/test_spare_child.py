"""The child a collecting judge leases ahead for its next job: confined in its cgroups before the job comes, one per
slot whatever the assignments, gone with its judge, and never a cost to a submission when it died meanwhile."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.proctree import parent
from worker.engine.grade import grade
from worker.engine.judge.launch import WarmJudge
from worker.engine.manifest import get_assignment, load_assignment
from worker.engine.runners import child_cgroup
from worker.engine.runners.docker import DockerRunner

REPO = Path(__file__).resolve().parents[2]
SOLUTION = {"solution.py": (REPO / "reference_tests" / "autograd" / "reference" / "solution.py").read_bytes()}


@pytest.fixture(scope="module")
def slot(docker_ready: bool) -> Iterator[tuple[WarmJudge, DockerRunner]]:
    """One slot's warm judge on the Docker runner with forked sandboxes, where children get cgroups of their own."""
    if not docker_ready:
        pytest.skip("no Docker engine here")
    if not child_cgroup.possible():
        pytest.skip("this host gives no child cgroups of its own (not root, or not cgroup v1)")
    judge, runner = WarmJudge(), DockerRunner(sandbox="fork")
    try:
        yield judge, runner
    finally:
        judge.close()
        runner.close()


def leased(judge: WarmJudge, timeout: float = 10.0) -> dict[str, list[int]]:
    """The children's cgroup folders (pids hierarchy) that this slot's collecting judges made: name → the host
    pids in it, once there is one with its child in it (a collecting judge leases the next child after it
    reported the job done), or as found after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not ((found := _leased(judge)) and all(found.values())) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def _leased(judge: WarmJudge) -> dict[str, list[int]]:
    assert judge._zygote is not None
    root = Path(child_cgroup.mounts()["pids"])
    found: dict[str, list[int]] = {}
    for folder in root.rglob(f"{child_cgroup.PREFIX}*"):
        owner = int(folder.name[len(child_cgroup.PREFIX):].split("-", 1)[0])
        if child_cgroup.pid_alive(owner) and parent(owner) == judge._zygote.pid:
            found[folder.name] = [int(pid) for pid in (folder / "cgroup.procs").read_text().split()]
    return found


def graded(judge: WarmJudge, runner: DockerRunner, assignment_path: Path | None = None,
           ahead: bool = True) -> float:
    """The reference solution's score; its one sandbox was leased before the job came where `ahead`."""
    assignment = load_assignment(assignment_path) if assignment_path else get_assignment("autograd")
    result = grade(assignment, SOLUTION, runner, judge=judge)
    assert result.environment.get("sandboxes") == 1, result.environment
    assert result.environment.get("sandboxes_ahead") == int(ahead), result.environment
    return result.score


def test_the_next_jobs_child_waits_confined_in_its_own_cgroups_before_the_job_comes(
        slot: tuple[WarmJudge, DockerRunner]) -> None:
    """Once a job is done, is the next job's child already leased, in cgroups of its own with a process in them,
    and does the next job take that one (its folder gone after it, another leased in its place)?"""
    judge, runner = slot
    assert graded(judge, runner, ahead=False) == 100.0  # the slot's first job: nothing was leased before it
    first = leased(judge)
    assert len(first) == 1, first
    assert all(first.values()), "the leased child's processes are in its cgroups"
    assert graded(judge, runner) == 100.0
    second = leased(judge)
    assert len(second) == 1 and set(second).isdisjoint(first), (first, second)


def test_a_slot_that_moves_to_another_assignment_keeps_one_child_ahead(
        slot: tuple[WarmJudge, DockerRunner], tmp_path: Path) -> None:
    """After a job of another assignment (its own collecting judge), does the slot still hold one child ahead,
    the new assignment's, and none for the one before?"""
    judge, runner = slot
    other = tmp_path / "autograd-copy"
    shutil.copytree(REPO / "reference_tests" / "autograd", other)
    with (other / "assignment.toml").open("a") as manifest:
        manifest.write("\n# another version of the same tests\n")
    assert graded(judge, runner) == 100.0
    before = leased(judge)
    assert graded(judge, runner, other, ahead=False) == 100.0  # a new assignment: its first job
    after = leased(judge)
    assert len(after) == 1 and set(after).isdisjoint(before), (before, after)
    assert graded(judge, runner, ahead=False) == 100.0  # its child ahead was dropped when the slot moved on
    assert len(leased(judge)) == 1


def test_a_child_whose_zygote_went_away_while_it_waited_costs_the_next_submission_nothing(
        slot: tuple[WarmJudge, DockerRunner]) -> None:
    """The zygote container is killed while a child waits, leased ahead, for the next job: does that job still
    score in full (on a child of a zygote started again), and its stale child's cgroups go?"""
    judge, runner = slot
    assert graded(judge, runner) == 100.0
    stale = leased(judge)
    assert len(stale) == 1
    container = next(iter(Path(child_cgroup.mounts()["pids"]).rglob(next(iter(stale))))).parent.name
    subprocess.run(["docker", "kill", container], check=True, capture_output=True, timeout=60)
    assert graded(judge, runner, ahead=False) == 100.0
    assert set(leased(judge)).isdisjoint(stale)
