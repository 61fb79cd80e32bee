"""A crash of the sandbox's own server (an exception our code did not catch): does a forked child say it as a fresh
sandbox does, with exit status 1 and the traceback in its output, rather than ending quietly with status 0?

A fresh sandbox runs the server as Python's main program, so Python prints an uncaught exception and exits with 1.
A zygote's child runs it under `zygote._child_main`, which must do the same: the judge reads a quiet exit 0 as
the student's process having ended for no reason, with nothing to show anyone what happened. Here the submission
makes the server's reply fail, from inside the sandbox, on both modes of the local runner.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator

import pytest

from tests.support.sandbox_support import MODES, Probe
from worker.engine.runners.local import LocalRunner
from worker.sandbox import wire

# Finds the server that called it (up the stack) and replaces its send, so that its reply to this very call
# raises out of its loop.
CRASHES_THE_SERVER = textwrap.dedent('''
    import sys


    def crash_the_server():
        frame = sys._getframe()
        while type(frame.f_locals.get("self")).__name__ != "Server":
            frame = frame.f_back
        server = frame.f_locals["self"]

        def send(self, message):
            raise RuntimeError("the server could not send its reply")

        type(server).send = send
        return "patched"
''')


@pytest.fixture(params=MODES)
def crashing(request: pytest.FixtureRequest, local_runners: dict[str, LocalRunner]) -> Iterator[Probe]:
    """A sandbox of the test's mode whose server has just crashed at its reply to `crash_the_server()`."""
    runner = local_runners[request.param]
    if runner.sandbox != request.param:
        pytest.skip(f"the local runner cannot {request.param} sandboxes here")
    sandbox = Probe(runner, CRASHES_THE_SERVER)
    try:
        sandbox.sandbox.write(wire.encode_frame({"op": "call", "fn": "crash_the_server", "args": [], "kwargs": {},
                                                 "id": "1"}))
        answer = sandbox.sandbox.read(timeout=30.0)
        assert answer == b"", f"the server answered instead of crashing: {answer!r}"
        yield sandbox
    finally:
        sandbox.stop()


def test_a_crashed_server_ends_with_status_1(crashing: Probe) -> None:
    """Does the sandbox end with exit status 1, not 0, when its server crashed?"""
    info = crashing.sandbox.exit_info(wait=10)
    assert (info.state, info.code) == ("exited", 1), (crashing.mode, info)


def test_a_crashed_servers_traceback_is_in_the_sandboxs_output(crashing: Probe) -> None:
    """Is the crash's traceback, down to the exception, in what the sandbox wrote to its stderr?"""
    crashing.sandbox.exit_info(wait=10)
    tail = crashing.sandbox.stderr_tail()
    assert "Traceback (most recent call last):" in tail, (crashing.mode, tail)
    assert "RuntimeError: the server could not send its reply" in tail, (crashing.mode, tail)
