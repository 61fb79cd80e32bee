"""The judge against small purpose-built assignments: verdicts, write-back, limits and plain messages."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.busy import busy_cores
from tests.support.isolation_probe import DAEMON
from worker.engine.errors import InfrastructureError, UsageError
from worker.engine.grade import check_files, grade
from worker.engine.judge.launch import WarmJudge
from worker.engine.manifest import load_assignment
from worker.engine.result import for_student
from worker.engine.runners import make_runner

MANIFEST = """
id = "probe"
title = "Probe"
files = ["solution.py"]
[limits]
test_timeout = 3
run_timeout = 60
[[deliverables]]
id = "a"
title = "Part A"
points = 10
[[deliverables]]
id = "b"
title = "Part B"
points = 10
"""

TESTS_A = '''
import pytest, torch
pytestmark = pytest.mark.deliverable("a")

@pytest.mark.points(4)
def test_in_place(student):
    """sgd_step updates in place"""
    p = torch.tensor([1.0, 2.0], requires_grad=True)
    p.grad = torch.tensor([1.0, 1.0])
    params = [p]
    student.sgd_step(params, 0.5)
    assert params[0].is_leaf, "update recorded by autograd: use torch.no_grad()"
    assert params[0] is p
    assert torch.allclose(p.detach(), torch.tensor([0.5, 1.5])), "p -= lr * p.grad"

@pytest.mark.points(3)
def test_caller_untouched(student):
    """derivative leaves the caller's tensor alone"""
    x = torch.tensor(2.0)
    d = student.derivative(student.code("lambda x: x ** 2"), x)
    assert not x.requires_grad and x.grad is None, "caller's tensor mutated"
    assert d.item() == pytest.approx(4.0)

@pytest.mark.points(3)
def test_detached(student):
    """predict returns a detached result"""
    out = student.predict(student.code("lambda t: t * 3"), torch.ones(2, requires_grad=True))
    assert out.grad_fn is None and not out.requires_grad, "graph left attached"
'''

TESTS_B = '''
import pytest, torch
pytestmark = pytest.mark.deliverable("b")

@pytest.mark.points(5)
@pytest.mark.visibility("hidden")
def test_hidden(student):
    assert student.answer() == 42, "the answer is 42"

@pytest.mark.points(5)
def test_slow(student):
    if student.slow() != 1:
        pytest.fail("slow() should return 1")

@pytest.mark.points(5)
def test_gpu_only(student, cuda):
    assert student.answer() == 42
'''

GOOD = '''
import time, torch
def sgd_step(params, lr):
    with torch.no_grad():
        for p in params:
            p -= lr * p.grad
def derivative(f, x):
    x = x.detach().clone().requires_grad_(True)
    f(x).backward()
    return x.grad
def predict(model, x):
    with torch.no_grad():
        return model(x)
def answer():
    print("thinking")
    return 42
def slow():
    return 1
'''


def make_assignment(tmp_path: Path, tests_a: str = TESTS_A, tests_b: str = TESTS_B, manifest: str = MANIFEST):
    """A small assignment folder with two deliverables."""
    (tmp_path / "assignment.toml").write_text(manifest)
    (tmp_path / "test_a.py").write_text(tests_a)
    (tmp_path / "test_b.py").write_text(tests_b)
    return load_assignment(tmp_path)


@pytest.fixture(scope="module")
def warm_judge() -> Iterator[WarmJudge]:
    """One warm judge for the module, as a worker has: each test's assignment is collected once by it."""
    judge = WarmJudge()
    yield judge
    judge.close()


JUDGES: dict[str, WarmJudge | None] = {"judge": None}


@pytest.fixture(params=["cold judge", "warm judge"], autouse=True)
def judge_kind(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test twice: a cold judge (a new Python, as `grader grade`), then the workers' warm judge, whose
    judges fork from a process that collected the assignment's tests before the job came."""
    JUDGES["judge"] = request.getfixturevalue("warm_judge") if request.param == "warm judge" else None
    yield request.param
    JUDGES["judge"] = None


def run(tmp_path: Path, source: str, **kwargs):
    """Grade `source` as solution.py with the local runner, by the judge `judge_kind` chose."""
    assignment = make_assignment(tmp_path, **kwargs)
    return grade(assignment, {"solution.py": textwrap.dedent(source).encode()}, make_runner("local"),
                 judge=JUDGES["judge"])


def verdicts_by_name(result) -> dict:
    """{test name: test result}."""
    return {t.name: t for d in result.deliverables for t in d.tests}


def test_correct_submission_scores_full_and_skipped_cuda_case_is_rescaled(tmp_path: Path) -> None:
    """Does a correct solution get full marks when a GPU-only test skips (the deliverable still worth 10)?"""
    result = run(tmp_path, GOOD)
    assert result.status == "graded"
    assert result.scores_by_deliverable() == {"a": 10.0, "b": 10.0}
    names = verdicts_by_name(result)
    assert "test_gpu_only" not in names
    assert names["test_hidden"].max_score == pytest.approx(5.0 * 10 / 10)


def test_in_place_and_mutation_mistakes_are_caught(tmp_path: Path) -> None:
    """Do write-back and graph mirroring expose a recorded update, a mutated caller and an attached graph?"""
    bad = GOOD.replace("with torch.no_grad():\n        for p in params:\n            p -= lr * p.grad",
                       "for i, p in enumerate(params):\n        params[i] = p - lr * p.grad")
    bad = bad.replace("x = x.detach().clone().requires_grad_(True)", "x.requires_grad_(True)")
    bad = bad.replace("    with torch.no_grad():\n        return model(x)", "    return model(x)")
    names = verdicts_by_name(run(tmp_path, bad))
    assert names["sgd_step updates in place"].status == "failed"
    assert "update recorded by autograd" in names["sgd_step updates in place"].output
    assert "caller's tensor mutated" in names["derivative leaves the caller's tensor alone"].output
    assert "graph left attached" in names["predict returns a detached result"].output


def test_a_hang_costs_only_its_own_test(tmp_path: Path) -> None:
    """Does an infinite loop in one function time out that test alone, with the limit in the message?"""
    result = run(tmp_path, GOOD.replace("def slow():\n    return 1", "def slow():\n    while True:\n        pass"))
    names = verdicts_by_name(result)
    assert names["test_slow"].status == "timeout"
    # The kernel stops it after 3 s of its own CPU time, however long those take on a busy machine: past its
    # limit the judge sees it computing, or waiting for a CPU (`overtime.py`).
    assert "timed out: used more than 3 s of CPU time in slow()" in names["test_slow"].output
    assert result.scores_by_deliverable() == {"a": 10.0, "b": 5.0}


def test_a_sleep_times_out_at_the_limit_not_the_backstop(tmp_path: Path) -> None:
    """Does a function that sleeps instead of computing (no CPU time used) time out soon after its 3 s limit,
    as one that is not computing, rather than at the 9 s wall-clock backstop?"""
    result = run(tmp_path, GOOD.replace("def slow():\n    return 1", "def slow():\n    time.sleep(3600)"))
    slow = verdicts_by_name(result)["test_slow"]
    assert slow.status == "timeout"
    assert "no answer within 3 s, and it was not computing (waiting or sleeping) in slow()" in slow.output
    assert slow.duration < 9
    assert result.scores_by_deliverable() == {"a": 10.0, "b": 5.0}


def test_a_busy_worker_does_not_cost_a_correct_solution_points(tmp_path: Path) -> None:
    """On a worker so busy that a correct function needing 1.6 s of CPU (of its 3 s limit) gets about a ninth of
    a core, and takes longer than three times its limit in wall-clock time, does it still pass? The limit is the
    student process's own CPU time, and past it the judge sees the sandbox waiting for a CPU, not idling."""
    busy = GOOD.replace("def slow():\n    return 1", "def slow():\n    end = time.process_time() + 1.6\n"
                        "    while time.process_time() < end:\n        pass\n    return 1")
    with busy_cores(8):
        result = run(tmp_path, busy)
    slow = verdicts_by_name(result)["test_slow"]
    assert slow.status == "passed", slow.output
    assert slow.duration > 3 * 3, "the machine was not busy enough to reach the old wall-clock backstop"
    assert result.scores_by_deliverable() == {"a": 10.0, "b": 10.0}


FORGES_A_REPLY = GOOD.replace("def slow():\n    return 1", '''def slow():
    import json, struct, sys
    frame = sys._getframe()
    while not hasattr(frame.f_locals.get("self"), "proto_out"):
        frame = frame.f_back
    server = frame.f_locals["self"]
    real = server.proto_out
    class Swallow:  # takes the server's real reply to this call, then puts the stream back
        def write(self, data):
            server.proto_out = real
            return len(data)
        def flush(self):
            pass
    body = json.dumps({"ok": True, "value": 1}).encode()
    real.write(struct.pack(">I", len(body)) + body)
    real.flush()
    server.proto_out = Swallow()
    return 1''')


def test_a_reply_the_students_code_forges_fails_its_call_at_once(tmp_path: Path) -> None:
    """A function that writes a well-formed reply without the request's id to the judge's channel and swallows
    its real reply: does its call fail at once as a crash, rather than wait out the limit as a timeout, and cost
    no other test?"""
    result = run(tmp_path, FORGES_A_REPLY)
    slow = verdicts_by_name(result)["test_slow"]
    assert slow.status == "crashed", slow.output
    assert slow.output == "the student process sent a reply nobody asked for in slow()"
    assert result.scores_by_deliverable() == {"a": 10.0, "b": 5.0}


def test_global_state_a_test_leaves_costs_no_other_test(tmp_path: Path) -> None:
    """A function that switches grad mode off and changes the default dtype for good: do the later tests, which
    need autograd, still pass (each test runs in a fresh fork of the process that imported the submission)?"""
    leaky = GOOD.replace("def sgd_step(params, lr):\n", "def sgd_step(params, lr):\n"
                         "    torch.set_grad_enabled(False)\n    torch.set_default_dtype(torch.float64)\n")
    result = run(tmp_path, leaky)
    names = verdicts_by_name(result)
    assert names["derivative leaves the caller's tensor alone"].status == "passed", (
        names["derivative leaves the caller's tensor alone"].output)
    assert result.scores_by_deliverable() == {"a": 10.0, "b": 10.0}


LEAVES_A_DAEMON = GOOD + DAEMON + '''
def alive(tag):
    import os
    found = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        name, state = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2]
        if name == tag and state not in "ZX":  # killed but not yet reaped is not alive
            found.append(int(pid))
    return found
'''

TESTS_LEAVE = '''
import pytest
pytestmark = pytest.mark.deliverable("b")

@pytest.mark.points(5)
def test_leave(student):
    assert student.daemon("left-by-a-test")
    assert student.alive("left-by-a-test"), "the daemon runs while its test does"

@pytest.mark.points(5)
def test_gone(student):
    assert student.alive("left-by-a-test") == [], "a daemon the last test left still runs"
'''


def test_a_daemon_one_test_leaves_is_dead_before_the_next_test(tmp_path: Path) -> None:
    """A function that double-forks a setsid daemon: is the daemon dead before the next test's process runs
    (the next one is forked while a test runs, and must not start beside anything the last one left)?"""
    result = run(tmp_path, LEAVES_A_DAEMON, tests_b=TESTS_LEAVE)
    names = verdicts_by_name(result)
    assert names["test_leave"].status == "passed", names["test_leave"].output
    assert names["test_gone"].status == "passed", names["test_gone"].output


def test_hidden_test_output_is_withheld_from_students(tmp_path: Path) -> None:
    """Do hidden tests keep their name and points but lose status and output in the student's view?"""
    result = run(tmp_path, GOOD.replace("return 42", "return 41"))
    shown = for_student(result.to_dict(), after_due=False)
    hidden = next(t for d in shown["deliverables"] for t in d["tests"] if t["name"] == "test_hidden")
    assert hidden["output"] == "" and hidden["status"] == "hidden" and hidden["max_score"] == 5.0
    full = verdicts_by_name(result)["test_hidden"]
    assert "the answer is 42" in full.output and "thinking" in full.output


def test_pytest_fail_is_an_ordinary_failure(tmp_path: Path) -> None:
    """Does a test that calls pytest.fail() show its message as a plain failure?"""
    result = run(tmp_path, GOOD.replace("def slow():\n    return 1", "def slow():\n    return 2"))
    slow = verdicts_by_name(result)["test_slow"]
    assert slow.status == "failed" and slow.output == "slow() should return 1"


def test_syntax_error_names_the_line(tmp_path: Path) -> None:
    """Does a submission that does not compile score 0 with the SyntaxError and its line?"""
    result = run(tmp_path, "def derivative(f, x)\n    return 1\n")
    assert result.score == 0 and result.status == "graded"
    assert "SyntaxError" in result.message and "line 1" in result.message


def test_lying_objects_cannot_pass(tmp_path: Path) -> None:
    """Can an object whose __eq__ always says True pass an equality check in the judge?"""
    liar = GOOD.replace("def answer():\n    print(\"thinking\")\n    return 42",
                        "class Liar:\n    def __eq__(self, other):\n        return True\n"
                        "def answer():\n    return Liar()")
    assert verdicts_by_name(run(tmp_path, liar))["test_hidden"].status == "failed"


def test_broken_reference_tests_are_an_error_not_a_zero(tmp_path: Path) -> None:
    """Do tests that fail to import (an instructor's bug) give status error rather than a student's zero?"""
    result = run(tmp_path, GOOD, tests_b="import nonexistent_module\n")
    assert result.status == "error"
    assert "reference tests are broken" in result.message


def test_test_without_deliverable_is_reported(tmp_path: Path) -> None:
    """Is a test that belongs to no deliverable reported to the instructor?"""
    result = run(tmp_path, GOOD, tests_b="def test_orphan(student):\n    assert True\n")
    assert result.status == "error" and "no deliverable marker" in result.message


def test_infrastructure_failure_raises_for_retry(tmp_path: Path) -> None:
    """Does a sandbox that cannot start raise InfrastructureError (to be retried) instead of grading zero?"""
    assignment = make_assignment(tmp_path)
    runner = make_runner("local", python="/nonexistent/python3")
    with pytest.raises(InfrastructureError, match="sandbox did not start"):
        grade(assignment, {"solution.py": GOOD.encode()}, runner, judge=JUDGES["judge"])


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        ({}, "no file"),
        ({"../solution.py": b"x = 1"}, "accepts"),
        ({"/etc/passwd": b"x = 1"}, "accepts"),
        ({"solution.py/..": b"x = 1"}, "accepts"),
        ({"solution.py\x00.txt": b"x = 1"}, "accepts"),
        ({"solution.py": b"\xff\xfe"}, "UTF-8"),
        ({"solution.py": b"x = 1\x00"}, "NUL"),
        ({"solution.py": b"#" * (1024 * 1024 + 1)}, "larger"),
    ],
)
def test_bad_files_are_refused(tmp_path: Path, files: dict, reason: str) -> None:
    """Are wrong names, path tricks, binary and oversized files refused before anything runs?"""
    with pytest.raises(UsageError, match=reason):
        check_files(make_assignment(tmp_path), files)
