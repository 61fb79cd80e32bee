"""Per-submission cost of grading through each runner, against the naive baseline, in one run.

    python bench/bench_runners.py [-n 10] [--runners local,docker] [--no-baseline]

Baseline ("naive"): one fresh container per submission running cold Python that imports torch and pytest and
executes the submission once — the floor of the design where tests and student code share one container, before a
single test has run. Then the real engine (`worker.engine.grade.grade`) grading the full reference test suite, per
runner, with a cold judge (a new Python per submission, as `grader grade` does) and with the warm judge the workers
use (a zygote that forks a judge per submission and keeps the next sandbox started).
Wall time is measured around each submission; CPU is the whole machine's busy time over the same span (from
/proc/stat, so container and dockerd CPU count too): run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from worker.engine.grade import grade  # noqa: E402
from worker.engine.judge.launch import ColdJudge, WarmJudge  # noqa: E402
from worker.engine.manifest import get_assignment  # noqa: E402
from worker.engine.runners import make_runner  # noqa: E402

EXAMPLES = ROOT / "reference_tests" / "autograd" / "examples"


def machine_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine since boot (user + nice + system + irq + softirq)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[:7])
    return (user + nice + system + irq + softirq) / 100.0


def measure(label: str, submissions: list[Path], grade_one: Callable[[Path], object],
            gap: float = 0.0) -> dict[str, float]:
    """Grade each submission once, `gap` idle seconds apart; median/p90 of wall and CPU seconds per submission."""
    walls, cpus = [], []
    for path in submissions:
        time.sleep(gap)
        cpu0, wall0 = machine_cpu_seconds(), time.perf_counter()
        grade_one(path)
        walls.append(time.perf_counter() - wall0)
        cpus.append(machine_cpu_seconds() - cpu0)
    return {"label": label, "n": len(walls), **_stats("wall", walls), **_stats("cpu", cpus)}


def _stats(name: str, values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, max(0, round(0.9 * len(ordered)) - 1))]
    return {f"{name}_median": statistics.median(ordered), f"{name}_p90": p90}


def naive_baseline(image: str) -> Callable[[Path], object]:
    """A fresh container per submission, cold Python importing torch and pytest and running the file."""

    def run(path: Path) -> object:
        code = ("import sys, torch, pytest; src = sys.stdin.read(); ns = {}; "
                "exec(compile(src, 'solution.py', 'exec'), ns)")
        return subprocess.run(
            ["docker", "run", "--rm", "-i", "--network", "none", "--entrypoint", "/opt/venv/bin/python", image,
             "-c", code],
            input=path.read_bytes(), capture_output=True, check=False, timeout=120,
        )

    return run


def engine(runner_name: str, judge: ColdJudge | WarmJudge) -> Callable[[Path], object]:
    """The real engine with the named runner and judge, the full reference test suite included."""
    assignment = get_assignment("autograd")
    runner = make_runner(runner_name)

    def run(path: Path) -> object:
        result = grade(assignment, {"solution.py": path.read_bytes()}, runner, judge=judge)
        if result.status != "graded":
            raise SystemExit(f"{runner_name}: {path.name}: {result.message}")
        return result

    return run


def main() -> None:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=10, help="submissions per runner (cycled from the examples)")
    parser.add_argument("--runners", default="local,docker")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--gap", type=float, default=0.0,
                        help="idle seconds between submissions (0: back to back, a deadline rush)")
    args = parser.parse_args()
    pool = [EXAMPLES / "reference.py", *sorted(p for p in EXAMPLES.glob("*.py") if p.name != "reference.py")]
    submissions = [pool[i % len(pool)] for i in range(args.n)]
    rows = []
    names = [r for r in args.runners.split(",") if r]
    image = None
    if "docker" in names or not args.no_baseline:
        from worker.engine.image import ensure_image

        image = ensure_image()
    if not args.no_baseline and image:
        rows.append(measure("naive: fresh container, cold python (no tests run)", submissions,
                            naive_baseline(image), args.gap))
    for name in names:
        for label, judge in (("cold judge", ColdJudge()), ("warm judge + pooled sandbox", WarmJudge())):
            run = engine(name, judge)
            run(submissions[0])  # one unmeasured grade: image layers, page cache, the zygote's start
            rows.append(measure(f"engine: {name} runner, {label}", submissions, run, args.gap))
            judge.close()
    print(f"{'what':60} {'n':>3} {'wall med':>9} {'wall p90':>9} {'cpu med':>8} {'cpu p90':>8}")
    for row in rows:
        print(f"{row['label']:60} {row['n']:>3} {row['wall_median']:>8.2f}s {row['wall_p90']:>8.2f}s "
              f"{row['cpu_median']:>7.2f}s {row['cpu_p90']:>7.2f}s")


if __name__ == "__main__":
    main()
