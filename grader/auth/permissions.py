"""Who may see what: students their own submissions, instructors their courses, admins everything."""

from __future__ import annotations

from sqlalchemy import select

from grader.auth.identity import current_user
from grader.database import db
from grader.errors import Forbidden, NotFound, Unauthorized
from grader.models import Assignment, Course, Enrollment, Submission, User
from grader.models.regrades import Regrade
from grader.services.assignments import find_assignment
from grader.services.queries import find_regrade


def course_role(user: User, course: Course) -> str | None:
    """`user`'s role in `course` ("instructor" for admins), or None when not enrolled."""
    if user.is_admin:
        return "instructor"
    return db.session.scalar(
        select(Enrollment.role).where(Enrollment.user_id == user.id, Enrollment.course_id == course.id)
    )


def require_user(user: User | None) -> User:
    """`user`, or Unauthorized when the request carried no valid credentials."""
    if user is None:
        raise Unauthorized("send Authorization: Bearer TOKEN or log in")
    return user


def caller() -> User:
    """The authenticated user of this request, or Unauthorized."""
    return require_user(current_user())


def require_instructor(user: User, course: Course) -> None:
    """Forbidden unless `user` teaches `course` (or is an admin): the one instructor check of the API, the
    instructor's pages and the LMS pages, in a plain sentence the error page can show."""
    if course_role(user, course) != "instructor":
        raise Forbidden(f"you do not teach {course.code}")


def require_member(user: User, course: Course) -> None:
    """Forbidden unless `user` is enrolled in `course` (in any role)."""
    if course_role(user, course) is None:
        raise Forbidden(f"you are not enrolled in {course.code}")


def submission_access(user: User, submission: Submission) -> str:
    """How `user` may see `submission`: "owner" or "instructor"; raises otherwise.

    Another student's submission is NotFound (its existence is not revealed); an instructor of another
    course gets Forbidden.
    """
    if submission.user_id == user.id:
        return "owner"
    role = course_role(user, submission.assignment.course)
    if role == "instructor":
        return "instructor"
    if role is None and teaches_anything(user):
        raise Forbidden("this submission belongs to a course you do not teach")
    raise NotFound(f"no submission {submission.id}")


def teaches_anything(user: User) -> bool:
    """Whether `user` is an instructor anywhere (global role, or an instructor enrollment)."""
    if user.role in ("instructor", "admin"):
        return True
    return (
        db.session.scalar(
            select(Enrollment.id).where(Enrollment.user_id == user.id, Enrollment.role == "instructor").limit(1)
        )
        is not None
    )


def taught_assignment(assignment_id: str) -> Assignment:
    """The assignment (by id or slug) whose course the caller teaches: NotFound, or Forbidden (the API's and the
    instructor's pages' one lookup of an assignment an instructor acts on)."""
    assignment = find_assignment(assignment_id)
    require_instructor(caller(), assignment.course)
    return assignment


def taught_regrade(regrade_id: int) -> Regrade:
    """The regrade (with its items, `find_regrade`) of an assignment whose course the caller teaches: NotFound, or
    Forbidden."""
    found = find_regrade(regrade_id)
    require_instructor(caller(), found.assignment.course)
    return found
