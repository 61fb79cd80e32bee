"""Find or create users, courses and enrollments (shared by the CLI, the demo and, later, LMS sign-ins)."""

from __future__ import annotations

from sqlalchemy import select

from grader.database import db
from grader.errors import NotFound
from grader.models import Course, Enrollment, User


def find_course(code: str) -> Course:
    """The course with this code, or NotFound."""
    course = db.session.scalar(select(Course).where(Course.code == code))
    if course is None:
        raise NotFound(f"no course {code!r} (create it with `grader course create {code}`)")
    return course


def find_user(email: str) -> User:
    """The user with this email (case-insensitive), or NotFound."""
    user = db.session.scalar(select(User).where(User.email == normalize_email(email)))
    if user is None:
        raise NotFound(f"no user {email!r} (create it with `grader user create {email}`)")
    return user


def normalize_email(email: str) -> str:
    """Emails are stored trimmed and lower-case."""
    return email.strip().lower()


def ensure_user(email: str, name: str = "", role: str = "student") -> User:
    """The user with this email, created (with `name` and `role`) if missing."""
    email = normalize_email(email)
    user = db.session.scalar(select(User).where(User.email == email))
    if user is None:
        user = User(email=email, name=name, role=role)
        db.session.add(user)
        db.session.flush()
    return user


def ensure_enrollment(user: User, course: Course, role: str) -> Enrollment:
    """`user`'s enrollment in `course`, created if missing, with `role`."""
    enrollment = db.session.scalar(
        select(Enrollment).where(Enrollment.user_id == user.id, Enrollment.course_id == course.id)
    )
    if enrollment is None:
        enrollment = Enrollment(user=user, course=course, role=role)
        db.session.add(enrollment)
    enrollment.role = role
    return enrollment
