"""Which sandbox zygote serves which slot: each slot of a worker has a Docker zygote of its own, so one slot's
submission cannot fill the memory cgroup that another slot's sandbox lives in."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.sandbox_support import Probe
from worker.engine.judge.sandboxes import SandboxZygotes
from worker.engine.manifest import Limits
from worker.engine.runners.docker import DockerRunner

REPO = Path(__file__).resolve().parents[2]

# Each process it forks stays under its own data limit (768 MiB); together they are far over the slot's share.
BOMB = textwrap.dedent('''
    import os, time
    KEEP = []

    def hold(mb):
        block = bytearray(mb << 20)
        block[::4096] = b"\\1" * len(block[::4096])
        KEEP.append(block)
        return sum(len(b) for b in KEEP) >> 20

    def bomb(processes, mb):
        for _ in range(processes):
            if os.fork() == 0:
                try:
                    hold(mb)
                except MemoryError:
                    pass
                time.sleep(600)
                os._exit(0)
            time.sleep(0.2)
        time.sleep(2)
        return processes
''')


@pytest.fixture
def holders() -> Iterator[list[int]]:
    """Two living processes standing in for two slots' judge zygotes (the keeper asks only whether they live)."""
    sleepers = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]) for _ in range(2)]
    yield [sleeper.pid for sleeper in sleepers]
    for sleeper in sleepers:
        sleeper.kill()
        sleeper.wait()


def test_each_judge_zygote_keeps_its_slot_and_a_gone_ones_slot_is_taken_again(holders: list[int]) -> None:
    """Does each holder keep the slot it was given, does a new holder get the slot of one that went, and do
    holders beyond the slots share the least held?"""
    zygotes = SandboxZygotes(2)
    first, second = holders
    assert [zygotes.slot_of(first), zygotes.slot_of(second), zygotes.slot_of(first)] == [0, 1, 0]
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    zygotes.holders[gone.pid] = zygotes.holders.pop(first)  # slot 0's holder went
    assert zygotes.slot_of(first) == 0
    assert zygotes.slot_of(1) in (0, 1)  # pid 1 lives: a third holder shares a slot
    assert SandboxZygotes(1).slot_of(first) == 0 and zygotes.slot_of(None) == 0


def test_one_slots_many_process_memory_bomb_leaves_the_other_slots_sandbox_working(
        holders: list[int], docker_ready: bool) -> None:
    """A submission that forks processes, each under its own memory limit, until its container's memory cgroup
    is full: does the sandbox of the worker's other slot keep what it holds and go on answering? (With one
    container for both slots, the kernel killed the other slot's sandbox, the largest process there.)"""
    if not docker_ready:
        pytest.skip("no Docker engine here")
    zygotes = SandboxZygotes(2)
    job = {"runner": "docker", "runner_options": {"sandbox": "fork"},
           "assignment_path": str(REPO / "reference_tests" / "autograd")}
    runners: list[DockerRunner] = []
    try:
        sockets = [zygotes.socket_for(job, holder) for holder in holders]
        assert None not in sockets and sockets[0] != sockets[1], sockets
        assert zygotes.socket_for(job, holders[0]) == sockets[0]
        runners = [DockerRunner(sandbox="fork", zygote=path) for path in sockets if path]
        limits = Limits(memory_mb=768)
        victim, bomb = (Probe(runner, BOMB, limits) for runner in runners)
        assert victim.call("hold", 256) == 256
        try:
            bomb.call("bomb", 16, 200, timeout=120)
        except (EOFError, OSError):
            pass  # its own container's OOM killer may take the post-import process too
        assert victim.call("hold", 16) == 272, "the other slot's sandbox lost its memory"
        assert victim.sandbox.exit_info().state == "running"
        victim.stop()
        bomb.stop()
    finally:
        for runner in runners:
            runner.close()
        zygotes.stop()
