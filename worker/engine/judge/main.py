"""The judge process: one grading job, in, verdicts out. Trusted code only; student code runs in the sandbox.

The job arrives as JSON on stdin (see `worker.engine.grade.judge_job`); the verdicts are written as JSON to the
path the job names. Nothing the student process sends can reach that file except through the verdicts.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker.engine.errors import InfrastructureError

if TYPE_CHECKING:
    from worker.engine.judge.plugin import GradingPlugin
    from worker.engine.judge.session import StudentSession
    from worker.engine.manifest import Manifest
    from worker.engine.runners.base import Runner, Sandbox, SandboxSpec


# How the judge runs pytest. Besides our plugin, only the parts of pytest that reference tests may use (fixtures
# such as tmp_path, monkeypatch, recwarn; marks; skips): what reports to humans or files (the terminal reporter,
# whose progress dots went to the worker's log, junitxml, pastebin, stepwise, the cache), output capture (the
# judge's output goes to the worker's log anyway), log capture (the student's code logs in the sandbox, never
# here; the plugin re-attaches its handlers around every test phase, a tenth of a judge's CPU), and the hooks
# that collect warnings and unraisable exceptions (warnings are ignored: `warnings.simplefilter` below; the
# unraisable-exception hook runs a full gc.collect() several times per session, a fifth of a judge's CPU) stay
# out.
PYTEST_ARGS = (
    "--import-mode=importlib", "--capture=no",
    *(arg for name in ("terminal", "cacheprovider", "unraisableexception", "threadexception", "faulthandler",
                       "junitxml", "doctest", "pastebin", "stepwise", "setuponly", "setupplan", "warnings",
                       "logging")
      for arg in ("-p", f"no:{name}")),
)


def run_job(job: dict[str, Any], warm: list[Sandbox] | None = None) -> dict[str, Any]:
    """Run the reference tests of `job['assignment_path']` against the job's files; return the verdicts.

    `warm` are sandboxes a pool started ahead of time (the first serves the tests, any others stand by for a
    test that ends its sandbox); without them, the first sandbox starts right away.
    Failures of the machinery come back as an `infrastructure_error` entry, never as an exception.
    """
    try:
        return _run_job(job, warm)
    except Exception as exc:
        for sandbox in warm or []:
            sandbox.stop()
        return failed_job(exc)


def failed_job(exc: Exception) -> dict[str, Any]:
    """The verdicts document of a job the machinery failed (no verdicts: the run is retried)."""
    return {"infrastructure_error": f"{type(exc).__name__}: {exc}", "verdicts": [], "config_errors": []}


def write_verdicts(job: dict[str, Any], verdicts: dict[str, Any]) -> None:
    """The verdicts file the parent reads: the only output of a judge that counts."""
    Path(job["verdicts_path"]).write_text(json.dumps(verdicts), encoding="utf-8")


@dataclass
class JobContext:
    """One job's machinery in the judge: its runner, sandbox spec and student session."""

    assignment: Manifest
    runner: Runner
    spec: SandboxSpec
    session: StudentSession
    cuda: bool = False


def open_job(job: dict[str, Any], warm: list[Sandbox] | None = None) -> JobContext:
    """The job's runner and student session, its first sandbox already starting."""
    if not job.get("gpu"):
        # Decided before CUDA initialises: without a GPU for the sandbox, CUDA cases must skip in the judge too.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    from worker.engine.judge.backstop import Report
    from worker.engine.judge.session import StudentSession
    from worker.engine.manifest import load_assignment
    from worker.engine.runners import make_runner
    from worker.engine.runners.base import SandboxSpec

    assignment = load_assignment(Path(job["assignment_path"]))
    runner = make_runner(job["runner"], **job.get("runner_options", {}))
    spec = SandboxSpec(limits=assignment.limits, gpu=bool(job.get("gpu")))
    session = StudentSession(runner, spec, dict(job["files"]), assignment.module)
    session.run.report = Report(job.get("given_back_path"))
    if warm:
        session.hand_over(warm)
    else:
        # Start the first sandbox now: it imports torch while this process imports torch and pytest.
        session.warm_up()
    import torch

    context = JobContext(assignment, runner, spec, session, cuda=spec.gpu and torch.cuda.is_available())
    session.run.start(assignment.limits.run_timeout)
    return context


def prepare_pytest() -> None:
    """Process-wide settings for running reference tests (once per judge, or once per collecting zygote)."""
    # Only our plugin and pytest's own: whatever else is installed beside the worker (pytest plugins of its
    # environment) has no say in verdicts, and loading it cost each judge most of a second.
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    # pytest's rewritten test modules are cached across judges (outside the assignment folder, which may be
    # read-only): each judge then only loads them.
    sys.dont_write_bytecode = False
    sys.pycache_prefix = str(Path(os.environ.get("GRADER_CACHE") or Path.home() / ".cache" / "grader") / "pycache")
    warnings.simplefilter("ignore")  # a deprecation in torch or pytest is nobody's test failure


def pytest_args(assignment: Manifest, scratch: str) -> list[str]:
    """pytest's command line for the assignment's reference tests, with an empty ini file in `scratch`."""
    ini = Path(scratch) / "pytest.ini"
    ini.write_text("[pytest]\n", encoding="utf-8")
    return [*PYTEST_ARGS, "-c", str(ini), "--rootdir", str(assignment.path),
            *[str(p) for p in assignment.test_files()]]


def close_job(context: JobContext, plugin: GradingPlugin) -> dict[str, Any]:
    """Stop the job's sandboxes; its verdicts document."""
    context.session.close()
    context.runner.close()
    return {
        "verdicts": [asdict(v) for v in plugin.verdicts.values()],
        "infrastructure_error": plugin.infrastructure_error,
        "config_errors": plugin.config_errors,
        "load_failure": context.session.load_failure.text() if context.session.load_failure else None,
        "sandboxes": context.session.sandboxes_started,
        "sandboxes_ahead": context.session.sandboxes_ahead,  # started before the job came: off its path
        "test_processes": context.session.processes_forked,  # fresh forks; the other tests ran in kept ones
        "runner": context.runner.describe(),
        "cuda": context.cuda,
    }


def _run_job(job: dict[str, Any], warm: list[Sandbox] | None) -> dict[str, Any]:
    import pytest

    from worker.engine.judge.plugin import GradingPlugin

    context = open_job(job, warm)
    prepare_pytest()
    plugin = GradingPlugin(context.assignment, context.session, cuda=context.cuda)
    with tempfile.TemporaryDirectory(prefix="grader-judge-") as scratch:
        args = pytest_args(context.assignment, scratch)
        cwd = os.getcwd()
        os.chdir(scratch)
        try:
            pytest.main(args, plugins=[plugin])
        except InfrastructureError as exc:
            plugin.infrastructure_error = str(exc)
        finally:
            os.chdir(cwd)
    return close_job(context, plugin)


def main() -> None:
    """Entry point: job JSON on stdin; verdicts to job['verdicts_path']; pytest's chatter to stderr.

    With `--zygote`: stay up, fork a judge per job line (see `worker.engine.judge.zygote`). With `--master DIR`:
    fork judge zygotes for a worker's slots (see `worker.engine.judge.master`).
    """
    if "--master" in sys.argv[1:]:
        from worker.engine.judge.master import master_main

        master_main(sys.argv[1:])
        return
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
