"""Engine commands: `grader grade` and `grader image build`. They need no app, database or broker.

`grader grade` runs the judge here, so it needs the `worker` extra (pytest, torch); without it the command says
so in one line instead of failing deep inside the judge.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from grader.cli.errors import one_line, usage_error

if TYPE_CHECKING:
    from worker.engine.result import GradeResult

FORMATS = ("json", "text", "gradescope", "prairielearn")


# What the judge imports that the web app's install lacks; `pip install '.[worker]'` brings them.
WORKER_EXTRA_MODULES = ("pytest",)


def require_worker_extra() -> None:
    """Exit 2 with one line naming the `worker` extra when a module the judge needs is not installed."""
    missing = [name for name in WORKER_EXTRA_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        usage_error(f"grading needs the worker extra ({', '.join(missing)} is not installed): "
                    "pip install -c requirements.lock -e '.[worker]'")


def submission_files(accepted: tuple[str, ...], paths: tuple[str, ...]) -> dict[str, bytes]:
    """Read FILE arguments. A single-file assignment takes any one file under its accepted name."""
    files: dict[str, bytes] = {}
    for raw in paths:
        path = Path(raw)
        if not path.is_file():
            usage_error(f"{raw} is a directory: give the file in it" if path.is_dir() else f"no such file: {raw}")
        name = accepted[0] if len(accepted) == 1 and len(paths) == 1 else path.name
        if name in files:
            usage_error(f"{name} given twice")
        files[name] = path.read_bytes()
    return files


@click.command("grade")
@click.option("--assignment", "assignment_id", required=True, help="Assignment id (a folder of reference_tests/).")
@click.option("--runner", type=click.Choice(["docker", "local"]), default=None,
              help="Sandbox: docker (default when an engine answers) or local.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="text (the default on a terminal), json (the default otherwise), gradescope or prairielearn.")
@click.option("--after-due-date", "after_due", is_flag=True,
              help="PrairieLearn: show after-due-date tests (the due date has passed).")
@click.argument("files", nargs=-1, required=True)
def grade_command(assignment_id: str, runner: str | None, fmt: str | None, after_due: bool,
                  files: tuple[str, ...]) -> None:
    """Grade FILE... against an assignment's reference tests and print the result."""
    from grader.config import resolve_runner
    from grader.exports import GRADESCOPE_FAILURE, to_gradescope, to_prairielearn
    from worker.engine.errors import AssignmentError, InfrastructureError, UsageError
    from worker.engine.grade import grade
    from worker.engine.manifest import get_assignment
    from worker.engine.result import GradeResult
    from worker.engine.runners import make_runner

    require_worker_extra()
    if fmt is None:
        # A person at a terminal reads a summary; pipes and scripts keep getting the JSON document.
        fmt = "text" if sys.stdout.isatty() else "json"

    try:
        assignment = get_assignment(assignment_id)
    except (UsageError, AssignmentError) as exc:
        usage_error(str(exc))
    submitted = submission_files(assignment.files, files)
    name = resolve_runner(runner)
    try:
        if name == "docker":
            from worker.engine.image import ensure_image

            ensure_image()
        result = grade(assignment, submitted, make_runner(name))
    except UsageError as exc:
        usage_error(str(exc))
    except InfrastructureError as exc:
        if fmt == "gradescope":
            # Gradescope has no "failed" field: a run that writes no results.json and exits non-zero is its
            # failed-autograder state, which staff see and can rerun. A 0 would look like the student's fault.
            click.echo(f"grader: error: grading failed: {one_line(str(exc))}", err=True)
            click.echo(GRADESCOPE_FAILURE, err=True)
            sys.exit(1)
        result = GradeResult(assignment=assignment.id, status="error", score=0.0,
                             max_score=assignment.max_score, message=f"Grading failed: {exc}", runner=name)
    if fmt == "text":
        click.echo(text_summary(result), nl=False)
        return
    if fmt == "gradescope":
        document = to_gradescope(result)
    elif fmt == "prairielearn":
        document = to_prairielearn(result, after_due=after_due)
    else:
        document = result.to_dict()
    click.echo(json.dumps(document, indent=2))


def _points(score: float, max_score: float) -> str:
    return f"{score:g} / {max_score:g}"


def text_summary(result: GradeResult) -> str:
    """A readable summary: the total, one line per deliverable, then each failed test and its message."""
    lines = [f"{result.assignment}: {_points(result.score, result.max_score)} ({result.status}, "
             f"{result.execution_time:.1f} s)"]
    if result.message:
        lines += ["", *result.message.rstrip().splitlines()]
    if result.deliverables:
        width = max(len(d.title) for d in result.deliverables)
        lines.append("")
        for deliverable in result.deliverables:
            passed = sum(t.status == "passed" for t in deliverable.tests)
            lines.append(f"  {deliverable.title:<{width}}  {_points(deliverable.score, deliverable.max_score):>13}"
                         f"  ({passed}/{len(deliverable.tests)} tests passed)")
    failed = [(d, t) for d in result.deliverables for t in d.tests if t.status != "passed"]
    if failed:
        lines += ["", "Failed tests:"]
        for deliverable, test in failed:
            lines.append(f"  {deliverable.title}: {test.name} [{test.status}, {_points(test.score, test.max_score)}]")
            lines += [f"      {line}" for line in (test.output.rstrip() or "(no message)").splitlines()]
    return "\n".join(lines) + "\n"


@click.group("image")
def image_group() -> None:
    """The Docker image student code runs in."""


@image_group.command("build")
@click.option("--force", is_flag=True, help="Rebuild even when an image for the current inputs exists.")
def image_build(force: bool) -> None:
    """Build (or rebuild) the runner image, its base image and wheelhouse included."""
    from worker.engine.errors import InfrastructureError
    from worker.engine.image import main_build

    try:
        main_build(force)
    except InfrastructureError as exc:
        click.echo(f"grader: error: {exc}", err=True)
        sys.exit(1)


def register(group: click.Group) -> None:
    """Add the engine commands to the `grader` command group."""
    group.add_command(grade_command)
    group.add_command(image_group)
