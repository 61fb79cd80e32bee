"""The judge master: a worker's slots share one import of torch and pytest and one sandbox zygote, and no failure
of the master, its keeper or a pool process costs a submission or leaves a process behind."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.proctree import alive, children, command, descendants, parent
from worker.engine.grade import grade
from worker.engine.judge import launch
from worker.engine.judge.launch import WarmJudge
from worker.engine.manifest import get_assignment
from worker.engine.runners import make_runner

REPO = Path(__file__).resolve().parents[2]
SOLUTION = {"solution.py": (REPO / "reference_tests" / "autograd" / "reference" / "solution.py").read_bytes()}


def wait_until(check, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


@pytest.fixture
def master() -> Iterator[launch.JudgeMaster]:
    """A judge master for two slots, as a worker's main process starts one; stopped (and checked) at the end."""
    launch.start_master(2)
    started = launch._master
    assert started is not None, "the judge master did not start"
    try:
        yield started
    finally:
        everything = [started.proc.pid, *descendants(started.proc.pid)]
        launch.stop_master()
        assert wait_until(lambda: not any(alive(pid) for pid in everything)), \
            [command(pid) for pid in everything if alive(pid)]
        assert launch.MASTER_ENV not in os.environ


def grade_both(judges: list[WarmJudge], rounds: int = 2) -> list[float]:
    """Grade the reference solution `rounds` times on each judge, the judges at the same time."""
    runner = make_runner("local", sandbox="fork")
    scores: list[float] = []
    errors: list[BaseException] = []

    def slot(judge: WarmJudge) -> None:
        try:
            for _ in range(rounds):
                scores.append(grade(get_assignment("autograd"), SOLUTION, runner, judge=judge).score)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=slot, args=(judge,)) for judge in judges]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    runner.close()
    assert not errors, errors
    return scores


def test_the_slots_share_one_judge_import_and_one_sandbox_zygote(master: launch.JudgeMaster) -> None:
    """Do two slots' judges both come from the master, and their sandboxes from one zygote that keeps a child
    ahead for each slot, besides the one each slot's collecting judge leased for its next job?"""
    judges = [WarmJudge(), WarmJudge()]
    try:
        assert grade_both(judges) == [100.0] * 4
        zygotes = {judge._zygote.pid for judge in judges if judge._zygote is not None}
        assert len(zygotes) == 2 and all(os.getppid() != pid for pid in zygotes)
        assert zygotes <= set(children(master.proc.pid)), "the judge zygotes are forked by the master"
        sandbox_zygotes = [pid for pid in descendants(master.proc.pid) if "sandbox/zygote.py" in command(pid)
                           and "sandbox/zygote.py" not in command(parent(pid))]
        assert len(sandbox_zygotes) == 1, [command(pid) for pid in sandbox_zygotes]
        assert '"idle": 2' in command(sandbox_zygotes[0])
        assert wait_until(lambda: len(children(sandbox_zygotes[0])) == 4), \
            "per slot, one child kept ahead by the zygote and one leased ahead by the slot's collecting judge"
    finally:
        for judge in judges:
            judge.close()


def test_a_slot_that_goes_takes_its_judge_zygote_and_leaves_the_other_working(master: launch.JudgeMaster) -> None:
    """When a pool process lets go of its judge zygote (it closed, or died), does that zygote leave, while the
    other slot's goes on grading?"""
    first, second = WarmJudge(), WarmJudge()
    try:
        grade_both([first, second], rounds=1)
        assert first._zygote is not None
        gone = first._zygote.pid
        first.close()
        assert wait_until(lambda: not alive(gone)), "the judge zygote outlived its connection"
        assert grade_both([second], rounds=1) == [100.0]
        assert grade_both([first], rounds=1) == [100.0]  # a new zygote from the same master
        assert first._zygote is not None and parent(first._zygote.pid) == master.proc.pid
    finally:
        first.close()
        second.close()


def test_a_keeper_that_dies_is_replaced_and_costs_no_submission(master: launch.JudgeMaster) -> None:
    """SIGKILL the keeper (and so the sandbox zygotes' owner): does the next submission still score, through a
    keeper the master started again?"""
    judge = WarmJudge()
    try:
        grade_both([judge], rounds=1)
        keepers = [pid for pid in children(master.proc.pid) if judge._zygote and pid != judge._zygote.pid]
        assert len(keepers) == 1
        os.kill(keepers[0], signal.SIGKILL)
        assert wait_until(lambda: any(pid not in keepers and judge._zygote and pid != judge._zygote.pid
                                      for pid in children(master.proc.pid)))
        assert grade_both([judge], rounds=2) == [100.0, 100.0]
    finally:
        judge.close()


def test_a_master_that_dies_costs_no_submission() -> None:
    """SIGKILL the master while a slot holds a judge zygote of it: is that zygote gone (it dies with its master),
    and does the slot's next submission score, with a judge zygote of the slot's own?"""
    launch.start_master(1)
    master = launch._master
    assert master is not None
    judge = WarmJudge()
    try:
        grade_both([judge], rounds=1)
        assert judge._zygote is not None
        everything = [master.proc.pid, *descendants(master.proc.pid)]
        os.kill(master.proc.pid, signal.SIGKILL)
        assert wait_until(lambda: not any(alive(pid) for pid in everything)), \
            [command(pid) for pid in everything if alive(pid)]
        assert grade_both([judge], rounds=1) == [100.0]
        assert isinstance(judge._zygote, launch._OwnZygote)
    finally:
        judge.close()
        launch.stop_master()


def test_the_host_cleanup_leaves_a_running_masters_sockets_alone(master: launch.JudgeMaster) -> None:
    """The workers' sweep removes judge scratch folders of killed gradings: does it leave a master's socket folder
    (as old as the worker) alone, however old?"""
    from worker.tasks import cleanup_host

    old = time.time() - 7 * 24 * 3600
    os.utime(master.dir, (old, old))
    cleanup_host(scratch_age=3600.0)
    assert Path(master.socket_path).exists()
    judge = WarmJudge()
    try:
        assert grade_both([judge], rounds=1) == [100.0]
        assert judge._zygote is not None and parent(judge._zygote.pid) == master.proc.pid
    finally:
        judge.close()
