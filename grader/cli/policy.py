"""`grader policy …`: show an assignment's course policy, override it, give extensions, set grace days."""

from __future__ import annotations

import json

import click
from flask.cli import with_appcontext

from grader.services import policy as policies
from grader.services.accounts import find_course
from grader.services.assignments import find_assignment
from grader.services.deadlines import course_policy


@click.group("policy")
def policy_group() -> None:
    """Deadlines, late penalties, limits and extensions of an assignment."""


@policy_group.command("show")
@click.argument("assignment")
@with_appcontext
def policy_show(assignment: str) -> None:
    """Print the policy in force for ASSIGNMENT (JSON) and its extensions."""
    found = find_assignment(assignment)
    click.echo(json.dumps(course_policy(found).to_dict(), indent=2))
    for extension in policies.extensions(found):
        click.echo(f"extension: {extension.user.email} due {extension.due_at.isoformat()} {extension.reason}")


def _late_steps(text: str) -> object:
    """late_steps from the command line: a JSON list, as the API takes it (the service says what is wrong in it)."""
    try:
        return json.loads(text) if text.strip() else None
    except json.JSONDecodeError:
        raise policies.PolicyError('late_steps is JSON: [{"until": "<date>", "credit": <percent>}, ...]') from None


@policy_group.command("set")
@click.argument("assignment")
@click.option("--field", "fields", multiple=True, metavar="NAME=VALUE",
              help=f"An override field ({', '.join(policies.OVERRIDE_FIELDS)}); repeat. None: the manifest's. "
                   'late_steps is JSON: [{"until": "<date>", "credit": <percent>}, ...].')
@with_appcontext
def policy_set(assignment: str, fields: tuple[str, ...]) -> None:
    """Replace ASSIGNMENT's override of its manifest policy (dates ISO 8601; naive ones are UTC)."""
    found = find_assignment(assignment)
    parsed: dict[str, object] = {}
    for item in fields:
        name, sep, value = item.partition("=")
        if not sep:
            raise policies.PolicyError(f"--field takes NAME=VALUE, not {item!r}")
        parsed[name.strip()] = _late_steps(value) if name.strip() == "late_steps" else value.strip()
    click.echo(json.dumps(policies.set_override(found, parsed), indent=2))


@policy_group.command("extend")
@click.argument("assignment")
@click.argument("email")
@click.option("--days", default=None, help="Extra days after the course's due date.")
@click.option("--due", default=None, help="A new due date instead (ISO 8601; naive is UTC).")
@click.option("--reason", default="", help="Shown to the student.")
@with_appcontext
def policy_extend(assignment: str, email: str, days: str | None, due: str | None, reason: str) -> None:
    """Give student EMAIL their own due date on ASSIGNMENT."""
    found = find_assignment(assignment)
    student = policies.find_student(found, email)
    extension = policies.grant_extension(found, student, due=due, days=days, reason=reason)
    click.echo(f"extension: {student.email} due {extension.due_at.isoformat()}")


@policy_group.command("revoke")
@click.argument("assignment")
@click.argument("email")
@with_appcontext
def policy_revoke(assignment: str, email: str) -> None:
    """Take student EMAIL's extension on ASSIGNMENT back."""
    found = find_assignment(assignment)
    student = policies.find_student(found, email)
    if not policies.revoke_extension(found, student):
        raise policies.PolicyError(f"{student.email} has no extension on {found.slug}", code="not_found")
    click.echo(f"revoked: {student.email}")


@policy_group.command("grace-days")
@click.argument("course")
@click.argument("days")
@with_appcontext
def policy_grace_days(course: str, days: str) -> None:
    """Give each student of COURSE a budget of DAYS grace days (0: none)."""
    budget = policies.set_grace_days(find_course(course), days)
    click.echo(f"grace days: {course} {budget}")


def register(group: click.Group) -> None:
    """Add `policy` to `group`."""
    group.add_command(policy_group)
