"""Instructors' changes to a course policy: the offering's override of the manifest, per-student
extensions and the course's grace-day budget. The dashboard, the API and the CLI all call these."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from grader.database import db
from grader.errors import NotFound, ServiceError
from grader.models import Assignment, Course, User
from grader.models.policy import Extension
from grader.services.accounts import user_with_email
from grader.services.assignments import effective_due
from grader.services.deadlines import course_policy, extension_for
from worker.engine.policy import (
    DAY,
    MAX_COOLDOWN_MINUTES,
    MAX_GRACE_DAYS,
    MAX_LATE_DAYS,
    MAX_SUBMISSIONS,
    amount,
    check_spec,
    close_after,
    from_spec,
    given_steps,
    given_time,
    merge,
    steps_from_fields,
)

# The override's fields, as the form, the API and the CLI name them (the manifest's `[policy]` names).
OVERRIDE_FIELDS = ("release", "due", "late_penalty_per_day", "late_days", "late_steps", "hard_close",
                   "max_submissions", "cooldown_minutes", "max_grace_days")


class PolicyError(ServiceError):
    """A policy change that cannot be made as asked (a bad date, dates out of order, an unknown field)."""

    code = "bad_policy"


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


# The most each number may be, wherever it comes from (the API's models say the same: `grader/api/schemas.py`).
# More means nothing a course wants, and would overflow a date (a cooldown of 10,000 years, an extension past year
# 9999) or hold the request for ever (late_days makes a late step per day).
MAXIMUM = {"late_penalty_per_day": 100, "late_days": MAX_LATE_DAYS, "max_submissions": MAX_SUBMISSIONS,
           "cooldown_minutes": MAX_COOLDOWN_MINUTES, "max_grace_days": MAX_GRACE_DAYS, "days": 3650,
           "grace_days": MAX_GRACE_DAYS}


def _number(name: str, value: Any, whole: bool = False) -> float:
    try:
        return amount(name, value, 0, MAXIMUM[name], whole)
    except ValueError as exc:
        raise PolicyError(str(exc)) from None


def _time(name: str, value: Any) -> datetime:
    try:
        return given_time(value)
    except ValueError as exc:
        raise PolicyError(f"{name}: {exc}") from None


def override_from_fields(assignment: Assignment, fields: dict[str, Any]) -> dict[str, Any]:
    """The override spec that `fields` ask for. A blank field goes back to the manifest's value; naive
    dates are UTC. The late window is given again as a whole (per-day penalty and days, or dated steps)."""
    unknown = set(fields) - set(OVERRIDE_FIELDS)
    if unknown:
        raise PolicyError(f"unknown policy fields {sorted(unknown)}; known: {', '.join(OVERRIDE_FIELDS)}")
    override: dict[str, Any] = {}
    if not _blank(fields.get("release")):
        override["release"] = _time("release", fields["release"]).isoformat()
    if not _blank(fields.get("due")):
        override["due"] = _time("due", fields["due"]).isoformat()
    due = from_spec(merge(assignment.policy, override)).due
    per_day, days, steps = fields.get("late_penalty_per_day"), fields.get("late_days"), fields.get("late_steps")
    if not (_blank(per_day) and _blank(days) and not steps):
        try:  # (the late fields' numbers are read where the steps are made, with the manifest's bounds)
            override["late"] = steps_from_fields(due, None if _blank(per_day) else per_day,
                                                 None if _blank(days) else days, given_steps(steps or []))
        except ValueError as exc:
            raise PolicyError(str(exc)) from None
    if not _blank(fields.get("hard_close")):
        try:
            override["close_after"] = close_after(due, _time("hard_close", fields["hard_close"]))
        except ValueError as exc:
            raise PolicyError(str(exc)) from None
    if not _blank(fields.get("max_submissions")):
        count = _number("max_submissions", fields["max_submissions"], True)
        if count < 1:
            raise PolicyError("max_submissions must be at least 1 (leave it blank for no limit)")
        override["max_submissions"] = int(count)
    if not _blank(fields.get("cooldown_minutes")):
        override["cooldown"] = round(_number("cooldown_minutes", fields["cooldown_minutes"]) * 60)
    if not _blank(fields.get("max_grace_days")):
        override["max_grace_days"] = int(_number("max_grace_days", fields["max_grace_days"], True))
    return override


def set_override(assignment: Assignment, fields: dict[str, Any]) -> dict[str, Any]:
    """Replace the offering's override with what `fields` ask for (all blank: the manifest's policy again);
    returns the policy now in force. Nothing changes when the result would be inconsistent."""
    override = override_from_fields(assignment, fields)
    try:
        check_spec(merge(assignment.policy, override))
    except ValueError as exc:
        raise PolicyError(str(exc)) from None
    assignment.policy_override = override or None
    assignment.due_at = effective_due(assignment)
    db.session.commit()
    return course_policy(assignment).to_dict()


def find_student(assignment: Assignment, email: str) -> User:
    """The student `email` of the assignment's course, or NotFound."""
    user = user_with_email(email)
    if user is None or not any(e.course_id == assignment.course_id for e in user.enrollments):
        raise NotFound(f"no student {email!r} in {assignment.course.code}")
    return user


def grant_extension(assignment: Assignment, student: User, *, due: Any = None, days: Any = None,
                    reason: str = "", granted_by: User | None = None) -> Extension:
    """Give `student` their own due date: `due` (a date and time; naive is UTC) or `days` after the
    offering's due date. Replaces an earlier extension."""
    if _blank(due) == _blank(days):
        raise PolicyError("give either a new due date or a number of extra days", code="bad_extension")
    base = course_policy(assignment).due
    if not _blank(due):
        new_due = _time("due", due)
    else:
        if base is None:
            raise PolicyError(f"{assignment.slug} has no due date to extend; give a due date instead",
                              code="bad_extension")
        extra = _number("days", days)
        if extra <= 0:
            raise PolicyError("an extension needs more than 0 extra days", code="bad_extension")
        new_due = base + timedelta(seconds=round(extra * DAY))
    extension = extension_for(assignment, student.id)
    if extension is None:
        extension = Extension(assignment=assignment, user_id=student.id, due_at=new_due)
        db.session.add(extension)
    extension.due_at, extension.reason = new_due, (reason or "")[:500]
    extension.granted_by_id = granted_by.id if granted_by is not None else None
    db.session.commit()
    return extension


def revoke_extension(assignment: Assignment, student: User) -> bool:
    """Take a student's extension back (their submissions keep the lateness decided at upload); whether
    there was one."""
    extension = extension_for(assignment, student.id)
    if extension is None:
        return False
    db.session.delete(extension)
    db.session.commit()
    return True


def extensions(assignment: Assignment) -> list[Extension]:
    """Every extension on the assignment, by student email."""
    return list(db.session.scalars(
        select(Extension).join(User, User.id == Extension.user_id)
        .where(Extension.assignment_id == assignment.id).order_by(User.email)
    ))


def set_grace_days(course: Course, days: Any) -> int:
    """Set the course's grace-day budget per student (0 or blank: none)."""
    budget = 0 if _blank(days) else int(_number("grace_days", days, True))
    course.grace_days = budget or None
    db.session.commit()
    return budget
