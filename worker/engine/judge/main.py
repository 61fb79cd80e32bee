"""The judge process: one grading job, in, verdicts out. Trusted code only; student code runs in the sandbox.

The job arrives as JSON on stdin (see `worker.engine.grade.judge_job`); the verdicts are written as JSON to the
path the job names. Nothing the student process sends can reach that file except through the verdicts.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.engine.runners.base import Sandbox


def run_job(job: dict[str, Any], warm: list[Sandbox] | None = None) -> dict[str, Any]:
    """Run the reference tests of `job['assignment_path']` against the job's files; return the verdicts.

    `warm` are sandboxes a pool started ahead of time (the first serves the first tests, the others the later
    isolation groups); without them, the first sandbox starts right away.
    Failures of the machinery come back as an `infrastructure_error` entry, never as an exception.
    """
    try:
        return _run_job(job, warm)
    except Exception as exc:
        for sandbox in warm or []:
            sandbox.stop()
        return {"infrastructure_error": f"{type(exc).__name__}: {exc}", "verdicts": [], "config_errors": []}


def write_verdicts(job: dict[str, Any], verdicts: dict[str, Any]) -> None:
    """The verdicts file the parent reads: the only output of a judge that counts."""
    Path(job["verdicts_path"]).write_text(json.dumps(verdicts), encoding="utf-8")


def _run_job(job: dict[str, Any], warm: list[Sandbox] | None) -> dict[str, Any]:
    if not job.get("gpu"):
        # Decided before torch loads: without a GPU for the sandbox, CUDA cases must skip in the judge too.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    from worker.engine.errors import InfrastructureError
    from worker.engine.judge.session import StudentSession
    from worker.engine.manifest import load_assignment
    from worker.engine.runners import make_runner
    from worker.engine.runners.base import SandboxSpec

    assignment = load_assignment(Path(job["assignment_path"]))
    runner = make_runner(job["runner"], **job.get("runner_options", {}))
    spec = SandboxSpec(limits=assignment.limits, gpu=bool(job.get("gpu")))
    session = StudentSession(runner, spec, dict(job["files"]), assignment.module)
    if warm:
        session.hand_over(warm)
    else:
        # Start the first sandbox now: it imports torch while this process imports torch and pytest.
        session.warm_up()
    import pytest
    import torch

    from worker.engine.judge.plugin import GradingPlugin

    cuda = spec.gpu and torch.cuda.is_available()
    # Only our plugin and pytest's own: whatever else is installed beside the worker (pytest plugins of its
    # environment) has no say in verdicts, and loading it cost each judge most of a second.
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    # pytest's rewritten test modules are cached across judges (outside the assignment folder, which may be
    # read-only): each forked judge then only loads them.
    sys.dont_write_bytecode = False
    sys.pycache_prefix = str(Path(os.environ.get("GRADER_CACHE") or Path.home() / ".cache" / "grader") / "pycache")
    session.run_deadline = time.monotonic() + assignment.limits.run_timeout
    plugin = GradingPlugin(assignment, session, cuda=cuda)
    with tempfile.TemporaryDirectory(prefix="grader-judge-") as scratch:
        ini = Path(scratch) / "pytest.ini"
        ini.write_text("[pytest]\n", encoding="utf-8")
        args = [
            "-c", str(ini), "--rootdir", str(assignment.path), "-p", "no:cacheprovider",
            "--import-mode=importlib", "-q", "--no-header", "--tb=no", "-W", "ignore",
            *[str(p) for p in assignment.test_files()],
        ]
        cwd = os.getcwd()
        os.chdir(scratch)
        try:
            pytest.main(args, plugins=[plugin])
        except InfrastructureError as exc:
            plugin.infrastructure_error = str(exc)
        finally:
            os.chdir(cwd)
            session.close()
            runner.close()
    return {
        "verdicts": [asdict(v) for v in plugin.verdicts.values()],
        "infrastructure_error": plugin.infrastructure_error,
        "config_errors": plugin.config_errors,
        "load_failure": session.load_failure.message if session.load_failure else None,
        "sandboxes": session.sandboxes_started,
        "runner": runner.describe(),
        "cuda": cuda,
        "groups": plugin.isolation_groups,
    }


def main() -> None:
    """Entry point: job JSON on stdin; verdicts to job['verdicts_path']; pytest's chatter to stderr.

    With `--zygote`: stay up, fork a judge per job line (see `worker.engine.judge.zygote`).
    """
    if "--zygote" in sys.argv[1:]:
        from worker.engine.judge.zygote import zygote_main

        zygote_main()
        return
    job = json.loads(sys.stdin.read())
    real_stdout = os.dup(1)
    os.dup2(2, 1)  # pytest prints; the verdicts file is the only output that counts
    try:
        verdicts = run_job(job)
    finally:
        os.dup2(real_stdout, 1)
    write_verdicts(job, verdicts)
