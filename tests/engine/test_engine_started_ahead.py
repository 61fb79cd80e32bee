"""Sandboxes started ahead of their use, on the fresh path (a new sandbox, importing torch, each time): when a test
loses its sandbox (a crash of the whole sandbox, a timeout, a forged reply), are those already started kept, and is
the next one started at once, so that no later test waits for a sandbox to start on its own path?"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from worker.engine.judge.outcomes import SandboxLimit
from worker.engine.judge.session import StudentSession
from worker.engine.manifest import Limits
from worker.engine.runners.base import Sandbox, SandboxSpec
from worker.engine.runners.local import LocalRunner

# `forge` answers the judge with a frame nobody asked for, written on the server's own protocol stream (as the
# hostile protocol_forgery.py does): the judge throws that sandbox away. `THREAD` makes each test run in place.
SOLUTION = '''
import json, struct, sys
{thread}
def _server():
    frame = sys._getframe()
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if type(candidate).__name__ == "Server" and hasattr(candidate, "proto_out"):
            return candidate
        frame = frame.f_back
def forge():
    body = json.dumps({{"id": "nobody", "ok": True, "value": 1}}).encode()
    out = _server().proto_out
    out.write(struct.pack(">I", len(body)) + body)
    out.flush()
    return 1
def one():
    return 1
'''

THREAD = '''
import concurrent.futures
POOL = concurrent.futures.ThreadPoolExecutor(max_workers=1)
POOL.submit(int).result()
'''


class RecordingRunner(LocalRunner):
    """The local runner's fresh sandboxes, each start recorded as ahead of its use (`warm`) or on a test's path."""

    def __init__(self) -> None:
        super().__init__(sandbox="fresh")
        self.starts: list[str] = []
        self._warming = False

    def warm(self, spec: SandboxSpec) -> Sandbox | None:
        self._warming = True
        try:
            return super().warm(spec)
        finally:
            self._warming = False

    def prepare(self, spec: SandboxSpec) -> Sandbox:  # type: ignore[override]
        self.starts.append("ahead" if self._warming else "on the path")
        return super().prepare(spec)  # type: ignore[misc]


@pytest.fixture
def runner() -> Iterator[RecordingRunner]:
    runner = RecordingRunner()
    yield runner
    runner.close()


def session_for(runner: RecordingRunner, thread: bool) -> StudentSession:
    files = {"solution.py": textwrap.dedent(SOLUTION.format(thread=THREAD if thread else ""))}
    session = StudentSession(runner, SandboxSpec(limits=Limits(test_timeout=10)), files, "solution")
    session.run.start(300)
    session.warm_up()  # as a judge does when its job comes
    return session


def run_tests(session: StudentSession, calls: list[str]) -> list[Any]:
    """Each of `calls` as a test of its own (the last one known as last, as the plugin says); each one's value, or
    the SandboxLimit it ended in."""
    results: list[Any] = []
    for i, fn in enumerate(calls):
        session.start_test(last=i == len(calls) - 1)
        try:
            results.append(session.call(fn, [], {})["value"])
        except SandboxLimit as exc:
            results.append(exc)
        session.end_test()
    return results


def test_tests_after_lost_sandboxes_find_theirs_started_ahead(runner: RecordingRunner) -> None:
    """Three tests in a row that each lose their sandbox to a forged reply, then one that passes: does each later
    test take a sandbox started ahead, none started on its path, and none left over beyond the last loss's?"""
    session = session_for(runner, thread=False)
    try:
        results = run_tests(session, ["forge", "forge", "forge", "one"])
    finally:
        session.close()
    assert all(isinstance(r, SandboxLimit) and "nobody asked for" in str(r) for r in results[:3]), results
    assert results[3] == 1
    # The first at the job's start; after the first loss one replacement, after each later loss two at a time.
    assert runner.starts == ["ahead"] * 5, runner.starts


def test_a_crash_in_place_keeps_the_sandboxes_started_for_the_tests_after_it(runner: RecordingRunner) -> None:
    """Tests in place (each in a sandbox of its own, two started ahead after each test): does a test that loses its
    sandbox leave the one already started for the next test in place, and does the last test start none?"""
    session = session_for(runner, thread=True)
    try:
        results = run_tests(session, ["one", "forge", "one"])
    finally:
        session.close()
    assert results[0] == 1 and isinstance(results[1], SandboxLimit) and results[2] == 1, results
    # The job's first, two after the first test; the crash took the first of those and kept the second.
    assert runner.starts == ["ahead"] * 3, runner.starts
    assert session.processes_forked == 3
