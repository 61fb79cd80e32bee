"""Engine commands: `grader grade` and `grader image build`. They need no app, database or broker."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import NoReturn

import click

FORMATS = ("json", "gradescope", "prairielearn")


def _usage_error(message: str) -> NoReturn:
    """One line on stderr, exit 2: the contract for every bad input to the CLI."""
    click.echo(f"grader: error: {message}", err=True)
    sys.exit(2)


def submission_files(accepted: tuple[str, ...], paths: tuple[str, ...]) -> dict[str, bytes]:
    """Read FILE arguments. A single-file assignment takes any one file under its accepted name."""
    files: dict[str, bytes] = {}
    for raw in paths:
        path = Path(raw)
        if not path.is_file():
            _usage_error(f"no such file: {raw}")
        name = accepted[0] if len(accepted) == 1 and len(paths) == 1 else path.name
        if name in files:
            _usage_error(f"{name} given twice")
        files[name] = path.read_bytes()
    return files


@click.command("grade")
@click.option("--assignment", "assignment_id", required=True, help="Assignment id (a folder of reference_tests/).")
@click.option("--runner", type=click.Choice(["docker", "local"]), default=None,
              help="Sandbox: docker (default when an engine answers) or local.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="json", show_default=True)
@click.argument("files", nargs=-1, required=True)
def grade_command(assignment_id: str, runner: str | None, fmt: str, files: tuple[str, ...]) -> None:
    """Grade FILE... against an assignment's reference tests and print the result."""
    from worker.engine.errors import AssignmentError, InfrastructureError, UsageError
    from worker.engine.grade import grade
    from worker.engine.manifest import get_assignment
    from worker.engine.result import GradeResult, to_gradescope, to_prairielearn
    from worker.engine.runners import default_runner_name, make_runner

    try:
        assignment = get_assignment(assignment_id)
    except (UsageError, AssignmentError) as exc:
        _usage_error(str(exc))
    submitted = submission_files(assignment.files, files)
    name = runner or default_runner_name()
    try:
        if name == "docker":
            from worker.engine.image import ensure_image

            ensure_image()
        result = grade(assignment, submitted, make_runner(name))
    except UsageError as exc:
        _usage_error(str(exc))
    except InfrastructureError as exc:
        result = GradeResult(assignment=assignment.id, status="error", score=0.0,
                             max_score=assignment.max_score, message=f"Grading failed: {exc}", runner=name)
    document = {"json": GradeResult.to_dict, "gradescope": to_gradescope, "prairielearn": to_prairielearn}[fmt]
    click.echo(json.dumps(document(result), indent=2))


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
