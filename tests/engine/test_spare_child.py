"""The child a collecting judge leases ahead for its next job: confined in its cgroups before the job comes, one per
assignment a slot serves, gone with its judge, and never a cost to a submission when it died meanwhile."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.proctree import children, parent
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
    """The children leased ahead by this slot's collecting judges, as their cgroup folders (pids hierarchy) with a
    process in them: name → the host pids there; waits up to `timeout` s for there to be one (a collecting judge
    leases its next child after it reported the job done)."""
    deadline = time.monotonic() + timeout
    while not (found := _leased(judge)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def graded_and_leased(judge: WarmJudge, runner: DockerRunner) -> str:
    """Grade the reference solution (a child leased ahead or not); the cgroup folder of the child its collecting
    judge leased next."""
    before = set(_leased(judge))
    assert graded(judge, runner, ahead=None) == 100.0
    deadline = time.monotonic() + 10
    while not (new := set(_leased(judge)) - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(new) == 1, (before, new)
    return new.pop()


def folders(name: str) -> list[Path]:
    """A child's cgroup folder named `name` in the pids hierarchy (none once it is removed)."""
    return list(Path(child_cgroup.mounts()["pids"]).rglob(name))


def container_of(name: str) -> str:
    """The id of the zygote container below whose cgroups a child's folder `name` is."""
    return folders(name)[0].parent.name


def _leased(judge: WarmJudge) -> dict[str, list[int]]:
    assert judge._zygote is not None
    root = Path(child_cgroup.mounts()["pids"])
    found: dict[str, list[int]] = {}
    for folder in root.rglob(f"{child_cgroup.PREFIX}*"):
        owner = int(folder.name[len(child_cgroup.PREFIX):].split("-", 1)[0])
        try:
            pids = [int(pid) for pid in (folder / "cgroup.procs").read_text().split()]
        except OSError:  # removed meanwhile
            continue
        if pids and child_cgroup.pid_alive(owner) and parent(owner) == judge._zygote.pid:
            found[folder.name] = pids
    return found


def graded(judge: WarmJudge, runner: DockerRunner, assignment_path: Path | None = None,
           ahead: bool | None = True) -> float:
    """The reference solution's score; its one sandbox was leased before the job came where `ahead` (None: either
    way)."""
    assignment = load_assignment(assignment_path) if assignment_path else get_assignment("autograd")
    result = grade(assignment, SOLUTION, runner, judge=judge)
    assert result.environment.get("sandboxes") == 1, result.environment
    if ahead is not None:
        assert result.environment.get("sandboxes_ahead") == int(ahead), result.environment
    return result.score


def test_the_next_jobs_child_waits_confined_in_its_own_cgroups_before_the_job_comes(
        slot: tuple[WarmJudge, DockerRunner]) -> None:
    """Once a job is done, is the next job's child already leased, in cgroups of its own with a process in them,
    and does the next job take that one (its folder gone after it, another leased in its place)?"""
    judge, runner = slot
    assert graded(judge, runner, ahead=False) == 100.0  # the slot's first job: nothing was leased before it
    first = leased(judge)
    assert len(first) == 1, first  # and its processes are in it
    assert graded(judge, runner) == 100.0
    second = leased(judge)
    assert len(second) == 1 and set(second).isdisjoint(first), (first, second)


def test_a_slot_that_alternates_between_assignments_finds_a_child_ahead_for_each(
        slot: tuple[WarmJudge, DockerRunner], tmp_path: Path) -> None:
    """Jobs of two assignments in turn (each collected by a judge of its own), as at two courses' deadlines: does
    each job after the first of its assignment find a child leased ahead, one per assignment at idle?"""
    judge, runner = slot
    other = tmp_path / "autograd-copy"
    shutil.copytree(REPO / "reference_tests" / "autograd", other)
    with (other / "assignment.toml").open("a") as manifest:
        manifest.write("\n# another version of the same tests\n")
    assert graded(judge, runner, ahead=None) == 100.0
    before = leased(judge)
    assert len(before) == 1
    assert graded(judge, runner, other, ahead=False) == 100.0  # a new assignment: its first job
    assert graded(judge, runner) == 100.0
    assert graded(judge, runner, other) == 100.0
    deadline = time.monotonic() + 10
    while len(after := leased(judge)) != 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(after) == 2 and set(after).isdisjoint(before), (before, after)
    owners = {name[len(child_cgroup.PREFIX):].split("-", 1)[0] for name in after}
    assert len(owners) == 2, "one child ahead per assignment's collecting judge"


def test_a_child_whose_zygote_went_away_while_it_waited_costs_the_next_submission_nothing(
        slot: tuple[WarmJudge, DockerRunner]) -> None:
    """The zygote container is killed while a child waits, leased ahead, for the next job: does that job still
    score in full (on a child of a zygote started again), and its stale child's cgroups go?"""
    judge, runner = slot
    stale = graded_and_leased(judge, runner)
    subprocess.run(["docker", "kill", container_of(stale)], check=True, capture_output=True, timeout=60)
    fresh = graded_and_leased(judge, runner)
    assert fresh != stale and not folders(stale), "the stale child's cgroups"
    assert graded(judge, runner) == 100.0


def test_a_judge_killed_mid_grading_leaves_no_cgroups_and_costs_the_next_job_nothing(
        slot: tuple[WarmJudge, DockerRunner]) -> None:
    """The job's judge is SIGKILLed while the child leased ahead for it imports the submission: are that child's
    cgroups gone once it is (the collecting judge that made them removes them), and does the next job score in
    full on a child leased ahead again?"""
    judge, runner = slot
    spare = graded_and_leased(judge, runner)
    collector = int(spare[len(child_cgroup.PREFIX):].split("-", 1)[0])
    slow = {"solution.py": b"import time\ntime.sleep(60)\n" + SOLUTION["solution.py"]}
    failed: list[BaseException] = []

    def grade_slow() -> None:
        try:
            grade(get_assignment("autograd"), slow, runner, judge=judge)
        except BaseException as exc:  # the judge's death is an infrastructure error (the run is retried)
            failed.append(exc)

    grading = threading.Thread(target=grade_slow)
    grading.start()
    try:
        deadline = time.monotonic() + 30
        while not children(collector) and time.monotonic() < deadline:
            time.sleep(0.05)
        job_judge = children(collector)
        assert len(job_judge) == 1, "the job's judge, forked by the collecting judge"
        time.sleep(1.0)  # the judge has sent the submission: the child imports it
        os.kill(job_judge[0], signal.SIGKILL)
    finally:
        grading.join(timeout=120)
    assert failed and not grading.is_alive(), failed
    deadline = time.monotonic() + 10
    while folders(spare) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not folders(spare), "the killed judge's child's cgroups"
    assert graded(judge, runner) == 100.0
