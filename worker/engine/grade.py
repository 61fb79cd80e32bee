"""Grade one submission: check its files, run the judge process, turn verdicts into the result document."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from worker.engine.errors import InfrastructureError, UsageError
from worker.engine.judge.backstop import report_path
from worker.engine.judge.launch import ColdJudge, WarmJudge
from worker.engine.manifest import Manifest
from worker.engine.result import DeliverableResult, GradeResult, TestResult, cap_text
from worker.engine.runners import default_runner_name, make_runner
from worker.engine.runners.base import Runner

MAX_FILE_BYTES = 1024 * 1024
MAX_VERDICTS_BYTES = 4 * 1024 * 1024
# Below this much free space in the scratch folder a worker takes no gradings (worker.availability): a grading
# writes its verdicts (up to MAX_VERDICTS_BYTES) and the submission's files there, on every slot at once.
MIN_SCRATCH_FREE_MB = 64
# The judge's own clock stops the run at run_timeout; this outer one only catches a judge that is itself stuck
# (it moves on by the sandbox starts and imports the judge reports it did not count: `judge/backstop.py`).
OUTER_SLACK = 120.0


def check_files(assignment: Manifest, files: dict[str, bytes]) -> dict[str, str]:
    """Validate submitted files (accepted names, size, UTF-8 text); return them decoded. Raise UsageError."""
    if not files:
        raise UsageError("no file was submitted")
    decoded: dict[str, str] = {}
    for name, content in files.items():
        assignment.check_file_name(name)
        if len(content) > MAX_FILE_BYTES:
            raise UsageError(f"{name} is larger than {MAX_FILE_BYTES // 1024} KB")
        try:
            decoded[name] = content.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UsageError(f"{name} is not UTF-8 text (byte {exc.start})") from exc
        if "\x00" in decoded[name]:
            raise UsageError(f"{name} contains NUL bytes; upload the Python source file")
    if assignment.files[0] not in decoded:
        raise UsageError(f"the submission must include {assignment.files[0]}")
    return decoded


def judge_job(assignment: Manifest, files: dict[str, str], runner: Runner, verdicts_path: Path) -> dict:
    """The JSON job handed to the judge process."""
    return {
        "assignment_path": str(assignment.path),
        "files": files,
        "runner": runner.name,
        "runner_options": runner.options(),
        "gpu": assignment.gpu != "none" and runner.gpu_capable(),
        "verdicts_path": str(verdicts_path),
        "given_back_path": str(report_path(verdicts_path)),  # the seconds its clocks did not count (backstop.py)
    }


def grade(assignment: Manifest, files: dict[str, bytes], runner: Runner | None = None,
          judge: ColdJudge | WarmJudge | None = None) -> GradeResult:
    """Grade `files` against `assignment`; InfrastructureError when the grading itself failed.

    `judge` runs the judge process: a new one per call by default; workers pass their warm judge.
    """
    decoded = check_files(assignment, files)
    runner = runner or make_runner(default_runner_name())
    judge = judge or ColdJudge()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="grader-run-") as scratch:
        verdicts_path = Path(scratch) / "verdicts.json"
        job = judge_job(assignment, decoded, runner, verdicts_path)
        judge.run(job, assignment.limits.run_timeout + OUTER_SLACK)
        verdicts = _read_verdicts(verdicts_path, judge)
    elapsed = time.monotonic() - started
    if verdicts.get("infrastructure_error"):
        raise InfrastructureError(str(verdicts["infrastructure_error"]))
    result = build_result(assignment, verdicts)
    result.execution_time = round(elapsed, 3)
    return result


def scratch_problem(folder: str | None = None) -> str | None:
    """Why gradings cannot write their scratch files in `folder` (this process's temporary folder unless given)
    now: too little free space, or a write refused (a full or read-only file system); None when they can."""
    folder = folder or tempfile.gettempdir()
    try:
        free = shutil.disk_usage(folder).free
        with tempfile.TemporaryFile(dir=folder) as probe:
            probe.write(b"grader")
            probe.flush()
    except OSError as exc:
        return f"its scratch folder {folder} cannot be written ({exc.strerror or exc})"
    if free < MIN_SCRATCH_FREE_MB * 1024 * 1024:
        return (f"its scratch folder {folder} has {free / 1024 / 1024:.0f} MB free, under the "
                f"{MIN_SCRATCH_FREE_MB} MB its gradings may need")
    return None


def _read_verdicts(verdicts_path: Path, judge: ColdJudge | WarmJudge) -> dict[str, Any]:
    try:
        size = verdicts_path.stat().st_size
        if size > MAX_VERDICTS_BYTES:
            raise InfrastructureError(f"the judge wrote {size} bytes of verdicts, over the limit")
        verdicts = json.loads(verdicts_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InfrastructureError(f"the judge failed without verdicts: {judge.last_stderr[-2000:]}") from exc
    if not isinstance(verdicts, dict):
        raise InfrastructureError("the judge's verdicts are not a JSON object")
    return verdicts


def build_result(assignment: Manifest, verdicts: dict[str, Any]) -> GradeResult:
    """Scores per deliverable from the judge's verdicts; tests that did not run (skipped) are left out."""
    if verdicts.get("config_errors"):
        detail = "\n".join(str(e) for e in verdicts["config_errors"])[:3000]
        return GradeResult(assignment=assignment.id, status="error", score=0.0, max_score=assignment.max_score,
                           message=f"The assignment's reference tests are broken (an instructor must fix them):\n"
                                   f"{detail}", runner=_runner_name(verdicts))
    ran = [v for v in verdicts.get("verdicts", []) if v.get("status") != "skipped"]
    deliverables = []
    for deliverable in assignment.deliverables:
        mine = [v for v in ran if v["deliverable"] == deliverable.id]
        possible = sum(float(v["points"]) for v in mine)
        # CUDA cases only run on GPU workers: scale so a deliverable is worth the same everywhere.
        scale = deliverable.points / possible if possible else 0.0
        tests = [
            TestResult(
                name=v["name"],
                status=v["status"],
                score=round(float(v["points"]) * scale if v["status"] == "passed" else 0.0, 4),
                max_score=round(float(v["points"]) * scale, 4),
                visibility=v["visibility"],
                output=cap_text(v.get("output", "")),
                duration=float(v.get("duration", 0.0)),
            )
            for v in mine
        ]
        score = round(sum(t.score for t in tests), 4) if possible else 0.0
        deliverables.append(DeliverableResult(id=deliverable.id, title=deliverable.title, score=score,
                                              max_score=deliverable.points, tests=tests))
    total = round(sum(d.score for d in deliverables), 4)
    result = GradeResult(assignment=assignment.id, status="graded", score=total, max_score=assignment.max_score,
                         deliverables=deliverables, runner=_runner_name(verdicts),
                         environment={**(verdicts.get("runner") or {}), "cuda": bool(verdicts.get("cuda")),
                                      "sandboxes": int(verdicts.get("sandboxes", 0)),
                                      "sandboxes_ahead": int(verdicts.get("sandboxes_ahead", 0)),
                                      "test_processes": int(verdicts.get("test_processes", 0))})
    result.message = _summary(result, verdicts.get("load_failure"))
    result.import_failure = cap_text(str(verdicts["load_failure"])) if verdicts.get("load_failure") else ""
    return result


def _runner_name(verdicts: dict[str, Any]) -> str:
    runner = verdicts.get("runner") or {}
    return str(runner.get("runner", "")) if isinstance(runner, dict) else ""


def _summary(result: GradeResult, load_failure: str | None) -> str:
    if load_failure:
        return cap_text(f"Your submission could not be run, so no test passed.\n{load_failure}")
    parts = ", ".join(f"{d.title} {d.score:g}/{d.max_score:g}" for d in result.deliverables)
    return f"Scored {result.score:g}/{result.max_score:g} ({parts})."
