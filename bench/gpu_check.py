"""GPU check for a machine with CUDA and no Docker: the corpus, CUDA cases on, through the service's warm path.

    python bench/gpu_check.py            # needs only torch and pytest beside the repository
    python bench/gpu_check.py --cold 4   # and the first 4 examples through a cold judge, for the timing
    python bench/gpu_check.py --split    # each example once, the two slots sharing them (a GPU session's minutes)

The warm path is a worker's: a judge master for two slots, each slot's judge forked from a judge zygote that
collected the tests, each sandbox forked from a sandbox zygote that imported torch. Both slots grade every
example, at the same time, in opposite orders. What it checks:

- each example scores what its header expects with the CUDA cases on, on both slots;
- the CUDA cases ran (a sandbox child initialises CUDA for itself);
- no zygote initialised CUDA: while nothing is graded, no process of the master's tree holds a GPU device file
  open (while a grading runs, its test processes do: the same probe counts them, to show it sees them), and
  nvidia-smi lists no process on the GPU.

Exit status 1 on any of these failing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.expectations import expected_scores  # noqa: E402
from tests.support.proctree import command, descendants, open_files  # noqa: E402
from worker.engine.grade import grade  # noqa: E402
from worker.engine.judge import launch  # noqa: E402
from worker.engine.judge.launch import ColdJudge, WarmJudge  # noqa: E402
from worker.engine.manifest import get_assignment  # noqa: E402
from worker.engine.result import GradeResult  # noqa: E402
from worker.engine.runners import make_runner  # noqa: E402
from worker.engine.runners.base import Runner  # noqa: E402
from worker.engine.runners.local import namespace_mode  # noqa: E402

EXAMPLES = sorted((ROOT / "reference_tests" / "autograd" / "examples").glob("*.py"))


def gpu_holders(root: int) -> dict[int, str]:
    """{pid: command} of the processes in `root`'s tree that hold a GPU device file open."""
    return {pid: command(pid)[:100] for pid in [root, *descendants(root)] if open_files(pid, "/dev/nvidia")}


def gpu_processes() -> str:
    """nvidia-smi's list of processes on the GPU ("" when none, or no nvidia-smi)."""
    if shutil.which("nvidia-smi") is None:
        return ""
    done = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader"],
                          capture_output=True, text=True, timeout=60, check=False)
    return done.stdout.strip()


def check(path: Path, result: GradeResult, seconds: float, label: str) -> bool:
    """Print one grading's line (and what went wrong); whether it scored as its header expects."""
    got = result.scores_by_deliverable()
    cuda = bool(result.environment.get("cuda", False))
    want = expected_scores(path, cuda=cuda)
    ok = result.status == "graded" and all(abs(got.get(k, -1) - want[k]) < 1e-6 for k in want)
    print(f"{'ok ' if ok else 'BAD'} {label:6} {path.stem:36} {result.score:6.1f}  cuda {cuda!s:5}  {seconds:5.2f}s",
          flush=True)
    if not ok:
        print(json.dumps({"expected": want, "got": got, "message": result.message[:500],
                          "failing": [f"{t.name}: {t.status}: {t.output[:300]}" for d in result.deliverables
                                      for t in d.tests if t.status != "passed"]}, indent=1), flush=True)
    return ok


def warm_run(runner: Runner, master: int, split: bool = False) -> tuple[int, int, int]:
    """Both slots grade every example at once (with `split`, each example once: the slots share them out);
    (mismatches, gradings whose CUDA cases ran, most processes seen holding the GPU at one time)."""
    assignment = get_assignment("autograd")
    judges = [WarmJudge(), WarmJudge()]
    bad, cuda_ran, most_holders = 0, 0, 0
    lock = threading.Lock()
    running = True

    def slot(index: int) -> None:
        nonlocal bad, cuda_ran
        for path in (EXAMPLES[index::2] if split else EXAMPLES if index == 0 else EXAMPLES[::-1]):
            started = time.monotonic()
            try:
                result = grade(assignment, {"solution.py": path.read_bytes()}, runner, judge=judges[index])
            except Exception as exc:  # an infrastructure error: reported, counted, and the slot goes on
                print(f"BAD slot{index} {path.stem:36} {type(exc).__name__}: {exc}", flush=True)
                with lock:
                    bad += 1
                continue
            ok = check(path, result, time.monotonic() - started, f"slot{index}")
            with lock:
                bad += not ok
                cuda_ran += bool(result.environment.get("cuda", False))

    def watch() -> None:
        nonlocal most_holders
        while running:
            most_holders = max(most_holders, len(gpu_holders(master)))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=slot, args=(i,)) for i in range(2)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    running = False
    watcher.join()
    count = len(EXAMPLES) * (1 if split else 2)
    print(f"warm: {count} gradings on two slots in {time.monotonic() - started:.1f} s", flush=True)
    for judge in judges:
        judge.close()
    return bad, cuda_ran, most_holders


def cold_run(runner: Runner, count: int) -> int:
    """The first `count` examples, each through a new judge process (the path before the zygotes); mismatches."""
    assignment = get_assignment("autograd")
    bad = 0
    for path in EXAMPLES[:count]:
        started = time.monotonic()
        result = grade(assignment, {"solution.py": path.read_bytes()}, runner, judge=ColdJudge())
        bad += not check(path, result, time.monotonic() - started, "cold")
    return bad


def main() -> int:
    """The warm run, the zygote checks, then (with --cold) some cold gradings; non-zero exit on any failure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", type=int, default=0, metavar="N", help="also grade the first N examples cold")
    parser.add_argument("--split", action="store_true",
                        help="grade each example once, the two slots sharing them (half the time: a GPU grading "
                             "takes ~5 s, each test's process initialising CUDA)")
    args = parser.parse_args()
    import torch

    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), isolation: {namespace_mode()}, "
          f"GPU device files: {'yes' if Path('/dev/nvidiactl').exists() else 'no'}", flush=True)
    failures: list[str] = []
    launch.start_master(2)
    master = launch._master
    if master is None:
        print("BAD the judge master did not start", flush=True)
        return 1
    runner = make_runner("local", sandbox="fork")
    try:
        bad, cuda_ran, most_holders = warm_run(runner, master.proc.pid, args.split)
        if bad:
            failures.append(f"{bad} warm gradings did not score as expected")
        if not cuda_ran:
            failures.append("no warm grading ran its CUDA cases")
        time.sleep(1.0)  # the last jobs' sandbox children finish exiting
        idle = gpu_holders(master.proc.pid)
        tree = len(descendants(master.proc.pid)) + 1
        print(f"while grading: up to {most_holders} processes held a GPU device file; idle: {len(idle)} of the "
              f"master's {tree} processes do {json.dumps(idle) if idle else ''}", flush=True)
        if idle:
            failures.append("a zygote (or a process left behind) holds the GPU while nothing is graded")
        on_gpu = gpu_processes()
        print(f"nvidia-smi, processes on the GPU at idle: {on_gpu or 'none'}", flush=True)
        if on_gpu:
            failures.append("processes hold GPU memory while nothing is graded")
        print(f"warm: {len(EXAMPLES) * (1 if args.split else 2)} gradings, {bad} mismatches, CUDA cases ran in "
              f"{cuda_ran}", flush=True)
        if args.cold and cold_run(runner, args.cold):
            failures.append("a cold grading did not score as expected")
    finally:
        runner.close()
        launch.stop_master()
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
