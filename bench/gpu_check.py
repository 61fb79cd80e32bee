"""GPU check for a machine with CUDA and no Docker: the local runner grades the corpus with CUDA cases on.

    python bench/gpu_check.py            # needs only torch and pytest beside the repository

Prints, per example, the score against the header's expectation and whether the CUDA cases ran.
Exit status 1 on any mismatch or when no CUDA case ran.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.expectations import expected_scores  # noqa: E402
from worker.engine.grade import grade  # noqa: E402
from worker.engine.manifest import get_assignment  # noqa: E402
from worker.engine.runners import make_runner  # noqa: E402
from worker.engine.runners.local import namespace_mode  # noqa: E402


def main() -> int:
    """Grade every example; report CUDA cases; non-zero exit on any mismatch."""
    import torch

    print(f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}, "
          f"device: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-'}, "
          f"isolation: {namespace_mode()}")
    assignment = get_assignment("autograd")
    runner = make_runner("local")
    examples = sorted((ROOT / "reference_tests" / "autograd" / "examples").glob("*.py"))
    bad = 0
    cuda_ran = 0
    for path in examples:
        started = time.monotonic()
        result = grade(assignment, {"solution.py": path.read_bytes()}, runner)
        got = result.scores_by_deliverable()
        cuda = result.environment.get("cuda", False)
        want = expected_scores(path, cuda=bool(cuda))
        cuda_ran += bool(cuda)
        ok = result.status == "graded" and all(abs(got[k] - want[k]) < 1e-6 for k in want)
        bad += not ok
        print(f"{'ok ' if ok else 'BAD'} {path.stem:40} {result.score:6.1f}  cuda {cuda!s:5}  "
              f"{time.monotonic() - started:5.1f}s")
        if not ok:
            print(json.dumps({"expected": want, "got": got, "message": result.message[:500],
                              "failing": [f"{t.name}: {t.status}: {t.output[:300]}" for d in result.deliverables
                                          for t in d.tests if t.status != "passed"]}, indent=1))
    print(f"{len(examples)} examples, {bad} mismatches, CUDA cases ran in {cuda_ran} of them")
    return 1 if bad or not cuda_ran else 0


if __name__ == "__main__":
    sys.exit(main())
