"""The gradebook of an assignment: one row per enrolled student, a score per deliverable."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from grader.database import db
from grader.models import Assignment, DeliverableScore, Enrollment, GradingRun, Submission, User


def counted_runs(assignment: Assignment, policy: str) -> dict[int, tuple[Submission, GradingRun]]:
    """{user id: (submission, run)} that counts for each student: the latest graded one, or the best."""
    rows = db.session.execute(
        select(Submission, GradingRun)
        .join(GradingRun, GradingRun.submission_id == Submission.id)
        .where(
            Submission.assignment_id == assignment.id,
            GradingRun.published.is_(True),
            GradingRun.status == "graded",
        )
        .order_by(Submission.created_at, Submission.id)
    ).all()
    return choose_counted([(submission, run) for submission, run in rows], policy)


def choose_counted(pairs: list[tuple[Submission, GradingRun]], policy: str) -> dict[int, tuple[Submission, GradingRun]]:
    """The rule for which run counts, per student, among graded `pairs`: "latest" keeps the last submission,
    "best" the highest score. Taken oldest first, so ">=" makes a tie go to the later submission."""
    chosen: dict[int, tuple[Submission, GradingRun]] = {}
    for submission, run in sorted(pairs, key=lambda pair: (pair[0].created_at, pair[0].id)):
        current = chosen.get(submission.user_id)
        if current is None or policy == "latest" or (run.score or 0.0) >= (current[1].score or 0.0):
            chosen[submission.user_id] = (submission, run)
    return chosen


def gradebook(assignment: Assignment, policy: str | None = None) -> dict[str, Any]:
    """Scores of every student enrolled in the assignment's course (null where nothing is graded yet)."""
    policy = policy or assignment.score_policy
    deliverables = assignment.active_deliverables
    students = db.session.scalars(
        select(User)
        .join(Enrollment, Enrollment.user_id == User.id)
        .where(Enrollment.course_id == assignment.course_id, Enrollment.role == "student")
        .order_by(User.email)
    ).all()
    chosen = counted_runs(assignment, policy)
    counts = dict(
        db.session.execute(
            select(Submission.user_id, func.count())
            .where(Submission.assignment_id == assignment.id)
            .group_by(Submission.user_id)
        ).all()
    )
    run_ids = [run.id for _, run in chosen.values()]
    by_run: dict[int, dict[int, float]] = {}
    if run_ids:
        for score in db.session.scalars(select(DeliverableScore).where(DeliverableScore.run_id.in_(run_ids))):
            by_run.setdefault(score.run_id, {})[score.deliverable_id] = score.score
    rows = []
    for student in students:
        row: dict[str, Any] = {
            "email": student.email,
            "external_id": student.external_id,
            "name": student.name,
            "submissions": counts.get(student.id, 0),
            "submission_id": None,
            "submitted_at": None,
            "score": None,
            "max_score": assignment.max_score,
            "deliverables": {d.slug: None for d in deliverables},
        }
        if student.id in chosen:
            submission, run = chosen[student.id]
            scores = by_run.get(run.id, {})
            row.update(
                submission_id=submission.id,
                submitted_at=submission.created_at.isoformat(),
                score=run.score,
                max_score=run.max_score,
                deliverables={d.slug: scores.get(d.id) for d in deliverables},
            )
        rows.append(row)
    return {
        "assignment": assignment.slug,
        "course": assignment.course.code,
        "version": assignment.version,
        "policy": policy,
        "max_score": assignment.max_score,
        "deliverables": [{"id": d.slug, "title": d.title, "max_score": d.points} for d in deliverables],
        "students": rows,
    }
