"""Find or create users, courses and enrollments (shared by the CLI, the demo and the LMS's webhooks)."""

from __future__ import annotations

from sqlalchemy import select

from grader.database import db
from grader.errors import Conflict, NotFound, ServiceError
from grader.models import Course, Enrollment, User


def courses() -> list[Course]:
    """Every course, by code."""
    return list(db.session.scalars(select(Course).order_by(Course.code)))


def course_with_code(code: str) -> Course | None:
    """The course with this code, if any."""
    return db.session.scalar(select(Course).where(Course.code == code))


def create_course(code: str, title: str = "") -> Course:
    """A new course CODE; Conflict when it exists."""
    if course_with_code(code) is not None:
        raise Conflict(f"course {code!r} already exists", code="exists")
    course = Course(code=code, title=title)
    db.session.add(course)
    return course


def ensure_course(code: str, title: str = "") -> Course:
    """The course CODE, created (with `title`) if missing."""
    course = course_with_code(code)
    if course is None:
        course = Course(code=code, title=title)
        db.session.add(course)
    return course


def find_course(code: str) -> Course:
    """The course with this code, or NotFound."""
    course = course_with_code(code)
    if course is None:
        raise NotFound(f"no course {code!r} (create it with `grader course create {code}`)")
    return course


def user_with_email(email: str) -> User | None:
    """The user with this email (case-insensitive), if any."""
    return db.session.scalar(select(User).where(User.email == normalize_email(email)))


def find_user(email: str) -> User:
    """The user with this email (case-insensitive), or NotFound."""
    user = user_with_email(email)
    if user is None:
        raise NotFound(f"no user {email!r} (create it with `grader user create {email}`)")
    return user


def users() -> list[User]:
    """Every user, by email."""
    return list(db.session.scalars(select(User).order_by(User.email)))


def create_user(email: str, name: str = "", role: str = "student", external_id: str | None = None) -> User:
    """A new user; ServiceError for an address without @, Conflict when the email is taken."""
    email = normalize_email(email)
    if "@" not in email:
        raise ServiceError(f"{email!r} is not an email address", code="bad_email")
    if user_with_email(email) is not None:
        raise Conflict(f"user {email!r} already exists", code="exists")
    user = User(email=email, name=name, role=role, external_id=external_id)
    db.session.add(user)
    return user


def normalize_email(email: str) -> str:
    """Emails are stored trimmed and lower-case."""
    return email.strip().lower()


def ensure_user(email: str, name: str = "", role: str = "student") -> User:
    """The user with this email, created (with `name` and `role`) if missing."""
    email = normalize_email(email)
    user = user_with_email(email)
    if user is None:
        user = User(email=email, name=name, role=role)
        db.session.add(user)
        db.session.flush()
    return user


def ensure_enrollment(user: User, course: Course, role: str) -> Enrollment:
    """`user`'s enrollment in `course`, created if missing, with `role`."""
    enrollment = enrollment_in(user, course.id)
    if enrollment is None:
        enrollment = Enrollment(user=user, course=course, role=role)
        db.session.add(enrollment)
    enrollment.role = role
    return enrollment


def enrollment_in(user: User, course_id: int) -> Enrollment | None:
    """`user`'s enrollment in the course, if any (none for a user not flushed yet)."""
    if user.id is None:
        return None
    return db.session.scalar(
        select(Enrollment).where(Enrollment.user_id == user.id, Enrollment.course_id == course_id)
    )


def remove_enrollment(user: User, course: Course) -> None:
    """Take `user` out of `course` (their submissions stay); NotFound when they are not enrolled."""
    enrollment = enrollment_in(user, course.id)
    if enrollment is None:
        raise NotFound(f"{user.email} is not enrolled in {course.code}")
    db.session.delete(enrollment)


def external_student(course_id: int, external_id: str, email: str, name: str) -> User:
    """The user an LMS knows by `external_id` (created if new, linked by email if known), enrolled as a student
    in the course unless already enrolled (an instructor stays one).

    Nothing is committed here: the caller commits the user together with what it came for (a submission), and
    a refusal rolls both back, so a rejected message leaves no account behind.
    """
    user = db.session.scalar(select(User).where(User.external_id == external_id))
    if user is None:
        user = user_with_email(email)
        if user is not None and user.external_id not in (None, external_id):
            raise Conflict(f"{email} already belongs to another external id", code="identity_conflict")
        if user is None:
            user = User(email=email, name=name, role="student")
            db.session.add(user)
        # The integration is registered by an administrator for this LMS: its word on who is who is trusted.
        user.external_id = external_id
    if enrollment_in(user, course_id) is None:
        db.session.add(Enrollment(user=user, course_id=course_id, role="student"))
        db.session.flush()
    return user
