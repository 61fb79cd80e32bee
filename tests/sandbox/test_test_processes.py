"""Each test's own process where the sandbox has no pid namespace of its own (the local runner on a kernel that
gives it none): the student server must still give every test a fresh fork, end it, and say how it ended.

Everywhere else the next test's process is forked while a test runs (`worker/sandbox/testprocs.py`); that path
runs in every other sandbox suite. This one drives the real student server over its pipes as the judge would,
with a small module of our own (nothing hostile runs here), so the plain path cannot rot unseen.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from worker.engine.errors import InfrastructureError
from worker.engine.judge.outcomes import call_error
from worker.sandbox import wire

SERVER = Path(__file__).resolve().parents[2] / "worker" / "sandbox" / "student_server.py"
MODULE = textwrap.dedent("""
    import os
    COUNT = [0]
    def bump():
        COUNT[0] += 1
        return COUNT[0]
    def quit_with(code):
        os._exit(code)
    def chatty():
        print("counted", bump())
        return True
    def say_then_quit(code):
        print("last words")
        os._exit(code)

    class Claims:  # says it is an instance of `kind` (isinstance() believes a __class__ property)
        def __init__(self, kind):
            self.kind = kind
        @property
        def __class__(self):
            return self.kind

    def claiming(name):
        import torch
        return Claims({"bool": bool, "int": int, "float": float, "str": str, "tensor": torch.Tensor,
                       "list": list, "dict": dict}[name])

    def too_big(size):
        return "x" * size

    def fall_asleep(marker):
        print("going to sleep")
        open(marker, "w").close()
        import time
        time.sleep(600)
""")


class Server:
    """The student server as a plain child process, spoken to in frames."""

    def __init__(self, folder: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k != "GRADER_OWN_PID_NAMESPACE"}
        # A session of its own: a test's process left asleep goes with it (`stop`), and the pipes close.
        self.proc = subprocess.Popen([sys.executable, "-I", "-B", str(SERVER)], cwd=folder, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        self.reader = wire.FrameReader()

    def receive(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while (frame := self.reader.next_frame()) is None:
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            assert chunk, "the student server ended"
            self.reader.feed(chunk)
        return frame

    def send(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(wire.encode_frame(message))
        self.proc.stdin.flush()
        return self.receive()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    started = Server(tmp_path)
    try:
        assert started.receive().get("ready")
        loaded = started.send({"op": "load", "id": "load", "files": {"solution.py": MODULE}, "module": "solution"})
        assert loaded.get("ok"), loaded
        yield started
    finally:
        os.killpg(started.proc.pid, signal.SIGKILL)
        started.proc.communicate()  # waits, and closes both pipes


def test_each_test_starts_from_the_imported_state_and_its_end_is_reported(server: Server) -> None:
    """Does a second test see none of the first test's changes, and is each end reported (status 0, its CPU)?"""
    for number in (1, 2):
        forked = server.send({"op": "fork", "id": f"fork{number}"})
        assert forked == {"ok": True, "value": "forked", "id": f"fork{number}"}, forked
        first = server.send({"op": "call", "id": f"a{number}", "fn": "bump", "args": [], "kwargs": {}})
        second = server.send({"op": "call", "id": f"b{number}", "fn": "bump", "args": [], "kwargs": {}})
        assert (first["value"], second["value"]) == (1, 2), (first, second)  # the count starts afresh each test
        ended = server.send({"op": "exit", "id": f"exit{number}"})
        assert ended["reaped"] and ended["id"] == f"fork{number}", ended
        assert ended["value"]["code"] == 0 and isinstance(ended["value"]["cpu"], float), ended


def test_a_test_process_that_dies_is_reported_with_its_exit_code(server: Server) -> None:
    """When a test's process ends in the middle of a call, does the report say how, and does the next test run?"""
    assert server.send({"op": "fork", "id": "f1"})["value"] == "forked"
    ended = server.send({"op": "call", "id": "c1", "fn": "quit_with", "args": [3], "kwargs": {}})
    assert ended["reaped"] and ended["id"] == "f1" and ended["value"]["code"] == 3, ended
    assert server.send({"op": "fork", "id": "f2"})["value"] == "forked"
    assert server.send({"op": "call", "id": "c2", "fn": "bump", "args": [], "kwargs": {}})["value"] == 1


def test_what_a_dying_call_printed_comes_with_the_report_and_nothing_else(server: Server) -> None:
    """Does the report of a test's process that died in a call carry what that call printed (and not what an
    earlier call printed, which its reply carried), and does a test ended by the judge report no output?"""
    assert server.send({"op": "fork", "id": "f1"})["value"] == "forked"
    reply = server.send({"op": "call", "id": "c1", "fn": "chatty", "args": [], "kwargs": {}})
    assert reply["ok"] and reply["output"] == "counted 1\n", reply
    ended = server.send({"op": "exit", "id": "x1"})
    assert ended["reaped"] and "output" not in ended["value"], ended
    assert server.send({"op": "fork", "id": "f2"})["value"] == "forked"
    assert server.send({"op": "call", "id": "c2", "fn": "chatty", "args": [], "kwargs": {}})["ok"]
    ended = server.send({"op": "call", "id": "c3", "fn": "say_then_quit", "args": [4], "kwargs": {}})
    assert ended["reaped"] and ended["id"] == "f2", ended
    assert ended["value"]["code"] == 4 and ended["value"]["output"] == "last words\n", ended


def test_the_judges_interrupt_ends_the_running_test_with_what_its_call_printed(server: Server, tmp_path: Path) -> None:
    """Does SIGUSR1 (the judge's interrupt, `testsignals.py`) end a test's process asleep in a call, reported with
    what the call printed; does it end nothing between tests; and does the next test run?"""
    os.kill(server.proc.pid, signal.SIGUSR1)  # no test's process runs: nothing to end, and the server lives on
    assert server.send({"op": "fork", "id": "f1"})["value"] == "forked"
    marker = tmp_path / "asleep"
    assert server.proc.stdin is not None
    server.proc.stdin.write(wire.encode_frame({"op": "call", "id": "c1", "fn": "fall_asleep", "args": [str(marker)],
                                               "kwargs": {}}))
    server.proc.stdin.flush()
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline, "the call never started"
        time.sleep(0.01)
    os.kill(server.proc.pid, signal.SIGUSR1)
    assert server.proc.stdout is not None
    assert select.select([server.proc.stdout], [], [], 30)[0], "no report of the interrupted test's end"
    ended = server.receive()
    assert ended["reaped"] and ended["id"] == "f1", ended
    assert ended["value"]["signal"] == signal.SIGKILL and ended["value"]["output"] == "going to sleep\n", ended
    assert server.send({"op": "fork", "id": "f2"})["value"] == "forked"
    assert server.send({"op": "call", "id": "c2", "fn": "bump", "args": [], "kwargs": {}})["value"] == 1


@pytest.mark.parametrize("kind", ["bool", "int", "float", "str", "tensor", "list", "dict"])
def test_a_value_that_only_claims_a_type_goes_back_unsupported(server: Server, kind: str) -> None:
    """Is an object whose `__class__` claims bool, a number, str, a tensor or a container answered at once as
    unsupported (what the judge fails with "got UnsupportedValue"), not as the type it claims?"""
    reply = server.send({"op": "call", "id": f"claim-{kind}", "fn": "claiming", "args": [kind], "kwargs": {}})
    assert reply["id"] == f"claim-{kind}"
    assert reply["ok"] and reply["value"] == {"__unsupported__": "Claims"}, reply


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a sandbox that cannot use CUDA")
def test_a_gpu_argument_the_sandbox_cannot_use_is_answered_as_ours(server: Server) -> None:
    """When the judge sends a CUDA tensor to a student server that cannot use CUDA (a GPU worker whose sandbox was
    given no usable GPU), is the call answered with a `device` error, which the judge takes as an infrastructure
    failure, instead of the tensor being moved to the CPU (graded as a wrong answer in the GPU tests) or blamed
    on the student's code?"""
    tensor = wire.tensor_to_wire(torch.ones(2))
    tensor["__tensor__"]["device"] = "cuda:0"
    reply = server.send({"op": "call", "id": "gpu", "fn": "bump", "args": [tensor], "kwargs": {}})
    assert reply["id"] == "gpu" and not reply["ok"], reply
    assert reply["error"]["kind"] == "device" and "cuda:0" in reply["error"]["message"], reply
    raised = call_error("bump", reply["error"])
    assert isinstance(raised, InfrastructureError), raised


def test_a_reply_too_big_to_send_still_answers_its_request(server: Server) -> None:
    """Does a return value over the frame limit get an error reply to that very request (the judge takes a frame
    that answers no request for a forgery by the student's code, so one without the id would misreport it)?"""
    reply = server.send({"op": "call", "id": "big", "fn": "too_big", "args": [wire.MAX_FRAME + 1], "kwargs": {}})
    assert reply["id"] == "big" and not reply["ok"], reply
    assert reply["error"]["kind"] == "protocol" and "could not be sent" in reply["error"]["message"], reply
    after = server.send({"op": "call", "id": "next", "fn": "bump", "args": [], "kwargs": {}})
    assert after == {**after, "ok": True, "id": "next"}, after
