"""`grader demo`: a ready-to-try course (idempotent), printing fresh credentials."""

from __future__ import annotations

import secrets

import click
from flask.cli import with_appcontext

from grader.auth.identity import issue_token
from grader.cli.serve import prepare_database
from grader.database import db
from grader.services.accounts import ensure_course, ensure_enrollment, ensure_user
from grader.services.assignments import attach

DEMO_COURSE = "DEMO101"
DEMO_ASSIGNMENT = "autograd"
# (output key, email, name, global role, course role)
DEMO_USERS = (
    ("instructor", "instructor@example.edu", "Ada Instructor", "instructor", "instructor"),
    ("student", "student@example.edu", "Sam Student", "student", "student"),
    ("student2", "student2@example.edu", "Kim Student", "student", "student"),
)


@click.command("demo")
@with_appcontext
def demo_command() -> None:
    """Create course DEMO101 with assignment autograd, an instructor and two students; print their tokens.

    Safe to run again: nothing is duplicated; tokens and passwords are issued afresh each time.
    """
    prepare_database()
    course = ensure_course(DEMO_COURSE, "Demo course")
    attach(course, DEMO_ASSIGNMENT)
    lines = [f"course: {DEMO_COURSE} (assignment {DEMO_ASSIGNMENT})"]
    logins = []
    for key, email, name, role, course_role in DEMO_USERS:
        user = ensure_user(email, name, role)
        ensure_enrollment(user, course, course_role)
        password = secrets.token_urlsafe(12)
        user.set_password(password)
        lines.append(f"{key}-token: {issue_token(user)}")
        logins.append(f"{key}-login: {email} {password}")
    db.session.commit()
    click.echo("\n".join([*lines, *logins]))
    click.echo("web: log in at /login with an email and password above", err=True)


def register(group: click.Group) -> None:
    """Add `demo` to `group`."""
    group.add_command(demo_command)
