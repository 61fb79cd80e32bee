"""A sandbox zygote told to stop (a worker's shutdown): does it end every child at once, the one it is confining
at that moment included?"""

from __future__ import annotations

import signal

from tests.support.leftovers import processes_mentioning, wait_until
from worker.engine.manifest import Limits
from worker.engine.runners.base import SandboxSpec
from worker.engine.runners.forked import spawn
from worker.engine.runners.local import LocalRunner


def test_a_zygote_stopped_right_after_a_lease_ends_the_child_it_was_confining_too() -> None:
    """Each lease makes the zygote confine the next child at once: stopped in that moment, does it kill that
    child too, rather than wait out its shutdown's 10 s for a process it had not counted yet (a worker's stop took
    10 s more, and so did a warm judge's close after a job whose tests ran in place), and leave nothing?"""
    runner = LocalRunner(sandbox="fork")
    spec = SandboxSpec(limits=Limits())
    try:
        for attempt in range(3):
            zygote = runner.start_zygote(spec)
            try:
                zygote.wait_ready()
                sandbox = spawn(zygote.socket_path, spec.limits)  # the zygote starts confining the next child
                zygote.proc.send_signal(signal.SIGTERM)
                assert zygote.proc.wait(timeout=30) == 128 + signal.SIGTERM
                said = zygote.last_words()
                assert "still running" not in said, (attempt, said)
                # Every child is a fork of the zygote, its command line naming the zygote's socket.
                path = zygote.socket_path
                assert wait_until(lambda: processes_mentioning(path), 15) == [], attempt  # noqa: B023
                sandbox.stop()
            finally:
                zygote.stop()
    finally:
        runner.close()
