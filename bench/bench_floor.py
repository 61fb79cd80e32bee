"""Where a submission's CPU goes, floor by floor, in one run: what the reference tests cost with nothing of ours
around them, what a fresh process per test costs on this machine, and what the real sandbox adds to each.

    python bench/bench_floor.py [-n 60] [--sessions 15] [--runner docker|local]

1. **The tests' own work**: the assignment's reference tests run by pytest in one warm process against the
   reference solution imported there (no sandbox, no judge, no fork): the CPU of the test calls alone, summed.
2. **A bare fork per test**: a process that imported torch, ran the sandbox's warm-ups and `forkready.settle()`
   forks a child per test that makes one autograd call and exits; the parent's and the child's CPU.
3. **A test through the sandbox**: the judge's `StudentSession` against a forked sandbox of the runner: each test
   forks a fresh process, makes the same call, ends. The judge's CPU, and the sandbox's (the zygote container's
   cgroup for docker; the sandbox's process tree, reaped children included, for local). Then the same with the
   test's process kept for the next test (`fresh_process = "deliverable"`, a deliverable's tests after its first).
4. **A sandbox session**: a fresh jailed child per submission — start, load the submission, one test, close.

Every figure is CPU time, which another job on the machine does not inflate much (wall time is shown too):
compare the rows with each other, and with `bench_service.py`'s machine CPU per submission.
"""

from __future__ import annotations

import argparse
import gc
import glob
import importlib.util
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ASSIGNMENT = ROOT / "reference_tests" / "autograd"
REFERENCE = ASSIGNMENT / "reference" / "solution.py"
CALL = ("derivative", "lambda x: x**2 + 3*x + 1", 2.0)  # one small autograd call, as the first tests make


def _load_reference() -> Any:
    spec = importlib.util.spec_from_file_location("solution", REFERENCE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- 1. the tests' own work ----------------------------------------------------------------------------------
class _Student:
    """`student.fn(...)` calls the reference solution here; `student.code(src)` builds the object here."""

    def __init__(self, solution: Any) -> None:
        self._solution = solution

    def code(self, src: str, name: str | None = None, **env: Any) -> Any:
        import torch

        scope = {"torch": torch, "nn": torch.nn, "F": torch.nn.functional, "math": math, **env}
        if name:
            exec(compile(src, "<test helper>", "exec"), scope)  # noqa: S102  (the tests' own helpers)
            return scope[name]
        return eval(compile(src, "<test helper>", "eval"), scope)  # noqa: S307

    def __getattr__(self, fn: str) -> Any:
        return getattr(self._solution, fn)


class InProcess:
    """A pytest plugin standing in for the judge's: `student` is the reference module itself, in this process."""

    def __init__(self) -> None:
        self.student = _Student(_load_reference())
        self.calls: dict[str, float] = {}

    def pytest_configure(self, config: pytest.Config) -> None:
        for marker in ("deliverable(id)", "points(n)", "visibility(v)"):
            config.addinivalue_line("markers", marker)

    @pytest.fixture(scope="session", name="student")
    def _student(self) -> _Student:
        return self.student

    @pytest.fixture(scope="session")
    def devices(self) -> list[str]:
        return ["cpu"]

    @pytest.fixture
    def cuda(self) -> str:
        pytest.skip("CPU only")

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Iterator[None]:
        started = time.process_time()
        try:
            return (yield)
        finally:
            self.calls[item.nodeid] = time.process_time() - started


def tests_own_work(rounds: int = 3) -> dict[str, float]:
    """CPU of the reference tests' calls in one warm process, the best of `rounds` runs (the first warms up)."""
    plugin = InProcess()
    best: dict[str, float] = {}
    for _ in range(rounds):
        plugin.calls.clear()
        code = pytest.main(["-q", "-p", "no:cacheprovider", "-W", "ignore", str(ASSIGNMENT)], plugins=[plugin])
        if code != 0:
            raise SystemExit(f"the reference tests failed in-process (pytest exit {code})")
        total = sum(plugin.calls.values()) * 1000
        if not best or total < best["cpu_ms"]:
            best = {"tests": len(plugin.calls), "cpu_ms": total}
    return best


# --- 2. a bare fork per test ---------------------------------------------------------------------------------
def bare_fork(count: int) -> dict[str, float]:
    """Run in a fresh interpreter (`--bare`): what forking a settled torch process per test costs here."""
    out = subprocess.run([sys.executable, __file__, "--bare", str(count)], capture_output=True, text=True,
                         check=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _bare(count: int) -> dict[str, float]:
    sys.path.insert(0, str(ROOT / "worker" / "sandbox"))
    import forkready
    import student_server

    student_server.warm_up()
    solution = _load_reference()
    forkready.settle()
    gc.freeze()
    fn = getattr(solution, CALL[0])
    f = eval(CALL[1])  # noqa: S307  (a constant of this file)

    def one(work: bool) -> None:
        pid = os.fork()
        if pid == 0:
            if work:
                fn(f, CALL[2])
            os._exit(0)
        os.waitpid(pid, 0)

    for _ in range(5):
        one(True)
    self0, kids0, wall = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN), \
        time.perf_counter()
    for _ in range(count):
        one(True)
    wall = time.perf_counter() - wall
    self1, kids1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"parent_ms": _cpu(self0, self1) / count * 1000, "child_ms": _cpu(kids0, kids1) / count * 1000,
            "child_faults": (kids1.ru_minflt - kids0.ru_minflt) / count, "wall_ms": wall / count * 1000}


def _cpu(before: Any, after: Any) -> float:
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


# --- 3 and 4. through the sandbox ----------------------------------------------------------------------------
def _container_cpu(ids: list[str]) -> float:
    """CPU seconds the containers `ids` used (cgroup v1 cpuacct or v2 cpu.stat)."""
    total = 0.0
    for cid in ids:
        for path in glob.glob(f"/sys/fs/cgroup/cpuacct/docker/{cid}*/cpuacct.usage"):
            total += int(Path(path).read_text()) / 1e9
        for path in glob.glob(f"/sys/fs/cgroup/system.slice/docker-{cid}*.scope/cpu.stat"):
            usage = dict(line.split() for line in Path(path).read_text().splitlines())
            total += int(usage["usage_usec"]) / 1e6
    return total


def _tree_cpu(root: int) -> float:
    """CPU seconds of `root`'s descendants now, with what each has reaped of its own children."""
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stats[int(entry)] = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
    kids: dict[int, list[int]] = {}
    for pid, fields in stats.items():
        kids.setdefault(int(fields[1]), []).append(pid)
    total, todo = 0, list(kids.get(root, []))
    while todo:
        pid = todo.pop()
        total += sum(int(v) for v in stats[pid][11:15])  # utime stime cutime cstime
        todo += kids.get(pid, [])
    return total / os.sysconf("SC_CLK_TCK")


def sandbox_costs(runner_name: str, tests: int, sessions: int) -> dict[str, dict[str, float]]:
    """Per test and per session through a forked sandbox of `runner_name`: the judge's CPU and the sandbox's."""
    from worker.engine.judge.proxy import StudentProxy
    from worker.engine.judge.session import StudentSession
    from worker.engine.manifest import Limits
    from worker.engine.runners import make_runner
    from worker.engine.runners.base import SandboxSpec

    runner = make_runner(runner_name, sandbox="fork")
    files = {"solution.py": REFERENCE.read_text()}

    def containers() -> list[str]:
        if runner_name != "docker":
            return []
        import docker

        from worker.engine.runners.docker import LABEL

        client = docker.from_env()
        try:
            return [c.id for c in client.containers.list(filters={"label": [f"{k}={v}" for k, v in LABEL.items()]})]
        finally:
            client.close()

    def sandbox_cpu(ids: list[str]) -> float:
        return _container_cpu(ids) if runner_name == "docker" else _tree_cpu(os.getpid())

    def test(session: StudentSession, keep: bool = False) -> None:
        student = StudentProxy(session)
        session.start_test()
        value = getattr(student, CALL[0])(student.code(CALL[1]), CALL[2])
        session.end_test(keep=keep)
        assert abs(value - 7.0) < 1e-9, value

    def timed(count: int, body: Callable[[], None]) -> dict[str, float]:
        for _ in range(3):
            body()
        time.sleep(1.0)  # what the warm-up left to tear down is not this measurement's
        ids = containers()
        me0, sandbox0, wall = resource.getrusage(resource.RUSAGE_SELF), sandbox_cpu(ids), time.perf_counter()
        for _ in range(count):
            body()
        wall = time.perf_counter() - wall
        time.sleep(1.0)  # the last test's teardown, and the reaping of the dead, count too
        me1, sandbox1 = resource.getrusage(resource.RUSAGE_SELF), sandbox_cpu(ids)
        return {"judge_ms": _cpu(me0, me1) / count * 1000, "sandbox_ms": (sandbox1 - sandbox0) / count * 1000,
                "wall_ms": wall / count * 1000}

    session = StudentSession(runner, SandboxSpec(limits=Limits()), files, "solution")
    try:
        per_test = timed(tests, lambda: test(session))
        per_kept = timed(tests, lambda: test(session, keep=True))
    finally:
        session.close()

    def one_session() -> None:
        fresh = StudentSession(runner, SandboxSpec(limits=Limits()), files, "solution")
        try:
            test(fresh)
        finally:
            fresh.close()

    per_session = timed(sessions, one_session)
    return {"test": per_test, "kept": per_kept, "session": per_session}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=60, help="tests per measurement")
    parser.add_argument("--sessions", type=int, default=15, help="sandbox sessions")
    parser.add_argument("--runner", default=None, help="docker (where an engine answers) or local")
    parser.add_argument("--bare", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare is not None:
        print(json.dumps(_bare(args.bare)))
        return 0
    from worker.engine.runners import default_runner_name

    runner = args.runner or default_runner_name()
    own = tests_own_work()
    bare = bare_fork(args.n)
    through = sandbox_costs(runner, args.n, args.sessions)
    test, session = through["test"], through["session"]
    per_test = test["judge_ms"] + test["sandbox_ms"]
    print(f"\n{'floor':58s} CPU")
    print(f"{'the reference tests own work, all ' + str(own['tests']) + ' in one process':58s} "
          f"{own['cpu_ms']:7.1f} ms per submission")
    print(f"{'a bare fork per test (parent + child)':58s} {bare['parent_ms'] + bare['child_ms']:7.2f} ms per test"
          f"   ({bare['child_faults']:.0f} faults, wall {bare['wall_ms']:.2f} ms)")
    print(f"{'a test through the ' + runner + ' sandbox (judge + sandbox)':58s} {per_test:7.2f} ms per test"
          f"   (judge {test['judge_ms']:.2f}, sandbox {test['sandbox_ms']:.2f}, wall {test['wall_ms']:.2f} ms)")
    kept = through["kept"]
    print(f"{'a test in a kept process (the last test of its deliverable)':58s} "
          f"{kept['judge_ms'] + kept['sandbox_ms']:7.2f} ms per test"
          f"   (judge {kept['judge_ms']:.2f}, sandbox {kept['sandbox_ms']:.2f}, wall {kept['wall_ms']:.2f} ms)")
    print(f"{'a sandbox session (start, load, one test, close)':58s} "
          f"{session['judge_ms'] + session['sandbox_ms']:7.1f} ms per session"
          f"   (judge {session['judge_ms']:.1f}, sandbox {session['sandbox_ms']:.1f}, "
          f"wall {session['wall_ms']:.1f} ms)")
    tests = own["tests"]
    print(f"\nper submission of {tests} tests: tests' own work {own['cpu_ms']:.0f} ms; a process per test adds "
          f"{tests * per_test:.0f} ms through the sandbox ({tests * (bare['parent_ms'] + bare['child_ms']):.0f} ms "
          f"of it is the bare fork floor)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
