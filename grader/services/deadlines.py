"""One student's course policy in force: their due date (extension included), what they have used, and
the upload decision stored with each submission. The rules themselves are `worker.engine.policy`'s."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from grader.database import db
from grader.errors import CoolingDown, UploadRefused
from grader.models import Assignment, Enrollment, Submission, User, database_now
from grader.models.policy import Extension
from worker.engine.policy import Decision, History, Policy, decide, from_spec

# Submissions that count toward the limit and the cooldown: an "error" one was never graded (the grader's
# fault, not the student's), so it gives the attempt back.
COUNTED_STATUSES = ("queued", "running", "graded")


def extension_for(assignment: Assignment, user_id: int) -> Extension | None:
    """The student's extension on this assignment, if an instructor gave one."""
    return db.session.scalar(
        select(Extension).where(Extension.assignment_id == assignment.id, Extension.user_id == user_id)
    )


def course_policy(assignment: Assignment) -> Policy:
    """The offering's policy: the manifest's, with the course's override on top. The due date is the row's
    `due_at`, which the manifest sync and the override keep equal to the spec's (one value to read)."""
    return replace(from_spec(assignment.policy_spec), due=assignment.due_at)


def student_policy(assignment: Assignment, user_id: int) -> Policy:
    """The policy as it applies to one student: the offering's, moved to their extended due date if any."""
    policy = course_policy(assignment)
    extension = extension_for(assignment, user_id)
    return policy.shifted(extension.due_at) if extension is not None else policy


def results_visible(assignment: Assignment, user_id: int, now: datetime | None = None) -> bool:
    """Whether after-due-date tests are shown to this student (their own due date has passed)."""
    return student_policy(assignment, user_id).results_visible(now or database_now(db.session))


def grace_days_spent(course_id: int, user_id: int, exclude_assignment: int | None = None) -> int:
    """Grace days the student has spent in the course: per assignment, the most any submission used."""
    per_assignment = (
        select(func.max(Submission.grace_days_used).label("used"))
        .join(Assignment, Assignment.id == Submission.assignment_id)
        .where(Assignment.course_id == course_id, Submission.user_id == user_id,
               Submission.status.in_(COUNTED_STATUSES))
        .group_by(Submission.assignment_id)
    )
    if exclude_assignment is not None:
        per_assignment = per_assignment.where(Submission.assignment_id != exclude_assignment)
    return int(db.session.scalar(select(func.coalesce(func.sum(per_assignment.c.used), 0))
                                 .select_from(per_assignment.subquery())) or 0)


def history(assignment: Assignment, user_id: int) -> History:
    """What the student has used: counted uploads, the last one's time, grace days left in the course."""
    uploads, last = db.session.execute(
        select(func.count(), func.max(Submission.created_at)).where(
            Submission.assignment_id == assignment.id, Submission.user_id == user_id,
            Submission.status.in_(COUNTED_STATUSES),
        )
    ).one()
    budget = assignment.course.grace_days or 0
    left = budget - grace_days_spent(assignment.course_id, user_id, exclude_assignment=assignment.id) if budget else 0
    return History(uploads=int(uploads or 0), last_upload_at=_aware(last), grace_days_left=max(left, 0))


def _aware(value: datetime | None) -> datetime | None:
    # An aggregate (max) comes back without the column type's UTC conversion on SQLite.
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def lock_student(assignment: Assignment, user: User) -> None:
    """Serialize one student's uploads to a course (PostgreSQL row lock on the enrollment; SQLite writes are
    serialized anyway), so two uploads at once cannot both take the last submission."""
    db.session.execute(
        select(Enrollment.id)
        .where(Enrollment.user_id == user.id, Enrollment.course_id == assignment.course_id)
        .with_for_update()
    )


def decide_upload(assignment: Assignment, user: User, now: datetime | None = None) -> Decision:
    """The policy's decision on an upload by `user` now; raises UploadRefused/CoolingDown when refused."""
    now = now or database_now(db.session)
    decision = decide(student_policy(assignment, user.id), now, history(assignment, user.id))
    if not decision.allowed:
        error = CoolingDown if decision.reason == "cooling_down" else UploadRefused
        raise error(decision.message, code=decision.reason, retry_at=decision.retry_at, judged_at=now)
    return decision


def standing(assignment: Assignment, user_id: int, now: datetime | None = None) -> dict[str, Any]:
    """Where the student stands, for their pages and the API: their dates, what is left, what an upload now
    would be (accepted or why not, and at what credit), and which graded submission counts."""
    now = now or database_now(db.session)
    policy = student_policy(assignment, user_id)
    used = history(assignment, user_id)
    decision = decide(policy, now, used)
    extension = extension_for(assignment, user_id)
    budget = assignment.course.grace_days or 0
    spent_here = db.session.scalar(
        select(func.coalesce(func.max(Submission.grace_days_used), 0)).where(
            Submission.assignment_id == assignment.id, Submission.user_id == user_id,
            Submission.status.in_(COUNTED_STATUSES))
    ) or 0
    return {
        "policy": policy.to_dict(),
        "extended": extension is not None,
        "extension_reason": extension.reason if extension is not None else "",
        "can_upload": decision.allowed,
        "refusal": decision.reason or None,
        "message": decision.message,
        "credit_now": decision.credit if decision.allowed else None,
        "late_now": decision.allowed and decision.late_seconds > 0,
        "submissions_used": used.uploads,
        "submissions_left": None if policy.max_submissions is None else max(policy.max_submissions - used.uploads,
                                                                             0),
        "next_upload_at": decision.retry_at.isoformat() if decision.retry_at else None,
        "grace_days": None if not budget else {
            "budget": budget,
            "spent": budget - used.grace_days_left + int(spent_here),
            "left": max(used.grace_days_left - int(spent_here), 0),
            "spent_here": int(spent_here),
        },
        "results_visible": policy.results_visible(now),
        "counts": assignment.score_policy,  # which of their graded submissions the gradebook counts
    }


def withheld_until(submission: Submission, result: dict[str, Any] | None) -> datetime | None:
    """When a graded result may leave for an LMS: None when now (nothing is after the due date, or the
    student's due date has passed), else the student's due date, before which its after-due-date points
    would reveal what their pages withhold."""
    tests = [test for part in (result or {}).get("deliverables", []) for test in part.get("tests", [])]
    if not any(test.get("visibility") == "after_due_date" for test in tests):
        return None
    policy = student_policy(submission.assignment, submission.user_id)
    if policy.due is None or policy.results_visible(database_now(db.session)):
        return None
    return policy.due
