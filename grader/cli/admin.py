"""Admin commands: `grader course …`, `grader user …`, `grader enrollment …`, `grader assignment …`,
`grader submission requeue`."""

from __future__ import annotations

import secrets

import click
from flask.cli import with_appcontext

from grader.auth.identity import issue_token, revoke_token
from grader.database import db
from grader.errors import ServiceError
from grader.models import (
    COURSE_ROLES,
    SCORE_POLICIES,
    USER_ROLES,
    GradingRun,
)
from grader.models.types import MAX_ID
from grader.services.accounts import (
    courses,
    create_course,
    create_user,
    ensure_enrollment,
    find_course,
    find_user,
    remove_enrollment,
    users,
)
from grader.services.assignments import all_assignments, attach, find_assignment, set_score_policy, sync_all
from grader.services.submissions import find_submission


# --- courses -------------------------------------------------------------------------------------------------
@click.group("course")
def course_group() -> None:
    """Create and list courses."""


@course_group.command("create")
@click.argument("code")
@click.option("--title", default="", help="Human-readable title.")
@with_appcontext
def course_create(code: str, title: str) -> None:
    """Create course CODE."""
    create_course(code, title)
    db.session.commit()
    click.echo(f"course: {code}")


@course_group.command("list")
@with_appcontext
def course_list() -> None:
    """List courses with their assignments and enrollment counts."""
    for course in courses():
        slugs = ",".join(a.slug for a in course.assignments) or "-"
        click.echo(f"{course.code}\t{len(course.enrollments)} enrolled\tassignments: {slugs}\t{course.title}")


# --- users ---------------------------------------------------------------------------------------------------
@click.group("user")
def user_group() -> None:
    """Create users, set passwords, issue API tokens."""


@user_group.command("create")
@click.argument("email")
@click.option("--name", default="")
@click.option("--role", type=click.Choice(USER_ROLES), default="student", show_default=True)
@click.option("--external-id", default=None, help="The LMS's id for this person.")
@click.option("--password", default=None, help="Web password [a random one is generated and printed].")
@with_appcontext
def user_create(email: str, name: str, role: str, external_id: str | None, password: str | None) -> None:
    """Create a user; prints their password and a fresh API token."""
    user = create_user(email, name, role, external_id)
    password = password or secrets.token_urlsafe(12)
    user.set_password(password)
    token = issue_token(user)
    db.session.commit()
    click.echo(f"user: {user.email} ({role})\npassword: {password}\ntoken: {token}")


@user_group.command("token")
@click.argument("email")
@with_appcontext
def user_token(email: str) -> None:
    """Issue a new API token for EMAIL (the previous one stops working and their web sessions end)."""
    user = find_user(email)
    token = issue_token(user)
    db.session.commit()
    click.echo(f"token: {token}")


@user_group.command("revoke-token")
@click.argument("email")
@with_appcontext
def user_revoke_token(email: str) -> None:
    """Revoke EMAIL's API token and end their web sessions."""
    user = find_user(email)
    revoke_token(user)
    db.session.commit()
    click.echo(f"token revoked for {user.email}; their sessions have ended")


@user_group.command("password")
@click.argument("email")
@click.option("--password", default=None, help="The new password [asked for, twice, when not given].")
@with_appcontext
def user_password(email: str, password: str | None) -> None:
    """Set EMAIL's web password (their existing web sessions end)."""
    user = find_user(email)  # before asking for a password: an unknown user is said at once
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    user.set_password(password)
    db.session.commit()
    click.echo(f"password set for {user.email}")


@user_group.command("list")
@with_appcontext
def user_list() -> None:
    """List users."""
    for user in users():
        click.echo(f"{user.email}\t{user.role}\t{user.external_id or '-'}\t{user.name}")


# --- enrollments ---------------------------------------------------------------------------------------------
@click.group("enrollment")
def enrollment_group() -> None:
    """Enroll users in courses as students or instructors."""


@enrollment_group.command("add")
@click.argument("email")
@click.argument("course")
@click.option("--role", type=click.Choice(COURSE_ROLES), default="student", show_default=True)
@with_appcontext
def enrollment_add(email: str, course: str, role: str) -> None:
    """Enroll EMAIL in COURSE (or change their role there)."""
    user, found = find_user(email), find_course(course)
    ensure_enrollment(user, found, role)
    db.session.commit()
    click.echo(f"enrolled: {user.email} in {found.code} as {role}")


@enrollment_group.command("remove")
@click.argument("email")
@click.argument("course")
@with_appcontext
def enrollment_remove(email: str, course: str) -> None:
    """Remove EMAIL from COURSE (their submissions stay)."""
    user, found = find_user(email), find_course(course)
    remove_enrollment(user, found)
    db.session.commit()
    click.echo(f"removed: {user.email} from {found.code}")


@enrollment_group.command("list")
@click.argument("course")
@with_appcontext
def enrollment_list(course: str) -> None:
    """List who is enrolled in COURSE."""
    found = find_course(course)
    for enrollment in sorted(found.enrollments, key=lambda e: (e.role, e.user.email)):
        click.echo(f"{enrollment.user.email}\t{enrollment.role}")


# --- assignments ---------------------------------------------------------------------------------------------
@click.group("assignment")
def assignment_group() -> None:
    """Attach assignment packs to courses and keep them in step with their manifests."""


@assignment_group.command("add")
@click.argument("assignment_id")
@click.option("--course", "course_code", required=True, help="Course that uses the assignment.")
@with_appcontext
def assignment_add(assignment_id: str, course_code: str) -> None:
    """Attach pack ASSIGNMENT_ID (a folder of the assignments root) to a course."""
    assignment = attach(find_course(course_code), assignment_id)
    db.session.commit()
    click.echo(f"assignment: {assignment.slug} v{assignment.version} in {course_code}")


@assignment_group.command("sync")
@with_appcontext
def assignment_sync() -> None:
    """Refresh every attached assignment from its manifest (new version when the tests changed)."""
    for assignment, changed in sync_all():
        click.echo(f"{assignment.slug}\tv{assignment.version}\t{'changed' if changed else 'unchanged'}")
    db.session.commit()


@assignment_group.command("policy")
@click.argument("assignment_id")
@click.argument("policy", type=click.Choice(SCORE_POLICIES))
@with_appcontext
def assignment_policy(assignment_id: str, policy: str) -> None:
    """Choose which submission counts in the gradebook: the latest or the best."""
    assignment = find_assignment(assignment_id)
    set_score_policy(assignment, policy)
    click.echo(f"{assignment.slug}: {policy}")


@assignment_group.command("list")
@with_appcontext
def assignment_list() -> None:
    """List attached assignments."""
    for assignment in all_assignments():
        click.echo(f"{assignment.slug}\tv{assignment.version}\t{assignment.course.code}\t{assignment.queue}\t"
                   f"{assignment.score_policy}\t{assignment.title}")


# --- submissions ---------------------------------------------------------------------------------------------
@click.group("submission")
def submission_group() -> None:
    """Put submissions whose grading was lost back in the queue."""


@submission_group.command("requeue")
@click.argument("ids", nargs=-1, type=click.IntRange(1, MAX_ID))
@click.option("--stuck", is_flag=True,
              help="Every run the recovery sweeps would act on: running with a dead worker, or queued with no "
                   "message in the broker.")
@click.option("--dry-run", is_flag=True, help="List what would be re-queued, and change nothing.")
@with_appcontext
def submission_requeue(ids: tuple[int, ...], stuck: bool, dry_run: bool) -> None:
    """Queue the grading of submissions IDS (queued, running or errored; graded ones need a regrade) again."""
    from grader.services import recovery

    if not ids and not stuck:
        raise ServiceError("name submission ids, or pass --stuck", code="usage")
    plan: list[tuple[GradingRun, str]] = []
    if stuck:
        plan += [(found.run, found.reason) for found in recovery.stuck_runs()]
    for submission_id in ids:
        submission = find_submission(submission_id)
        run = submission.published_run or submission.runs[-1]
        if run.status == "graded":
            click.echo(f"skip	submission {submission_id}	run {run.number}	graded: regrade it from the dashboard")
            continue
        if all(planned.id != run.id for planned, _ in plan):
            plan.append((run, f"{run.status}, as requested"))
    for run, reason in plan:
        where = f"submission {run.submission_id}	run {run.number}	attempt {run.attempt}"
        if dry_run:
            click.echo(f"would requeue	{where}	{reason}")
        elif recovery.requeue(run, "an administrator queued it again", limit_attempts=False):
            click.echo(f"requeued	{where}	{reason}")
        else:
            click.echo(f"skip	{where}	it changed meanwhile (finished or taken by a worker)")
    if not plan:
        click.echo("nothing to requeue")


def register(group: click.Group) -> None:
    """Add the admin groups to `group`."""
    for command in (course_group, user_group, enrollment_group, assignment_group, submission_group):
        group.add_command(command)
