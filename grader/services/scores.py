"""The gradebook of an assignment: one row per enrolled student, a score per deliverable, and the one rule for
the score that counts (latest or best, times the late credit stored with the submission at upload time),
used by the dashboard, the CSV, the API, regrades and the LMS passback."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from grader.database import db
from grader.models import Assignment, DeliverableScore, Enrollment, GradingRun, Submission, User
from grader.services.deadlines import course_policy as deadline_policy
from worker.engine.policy import counted_score


def counted_runs(assignment: Assignment, policy: str,
                 user_id: int | None = None) -> dict[int, tuple[Submission, GradingRun]]:
    """{user id: (submission, run)} that counts for each student (or only for `user_id`): the latest graded one,
    or the best."""
    query = (
        select(Submission, GradingRun)
        .join(GradingRun, GradingRun.submission_id == Submission.id)
        .where(
            Submission.assignment_id == assignment.id,
            GradingRun.published.is_(True),
            GradingRun.status == "graded",
        )
        .order_by(Submission.created_at, Submission.id)
    )
    if user_id is not None:
        query = query.where(Submission.user_id == user_id)
    rows = db.session.execute(query).all()
    return choose_counted([(submission, run) for submission, run in rows], policy)


def counted(submission: Submission, run: GradingRun) -> float | None:
    """The score of `run` that counts: its raw score times the submission's late credit."""
    return counted_score(run.score, submission.credit)


def choose_counted(pairs: list[tuple[Submission, GradingRun]], policy: str) -> dict[int, tuple[Submission, GradingRun]]:
    """The rule for which run counts, per student, among graded `pairs`: "latest" keeps the last submission,
    "best" the highest counted score (after any late penalty, so a late better run beats an on-time one only
    when it is still better once penalized). Taken oldest first, so ">=" makes a tie go to the later one."""
    chosen: dict[int, tuple[Submission, GradingRun]] = {}
    for submission, run in sorted(pairs, key=lambda pair: (pair[0].created_at, pair[0].id)):
        current = chosen.get(submission.user_id)
        if current is None or policy == "latest" or (counted(submission, run) or 0.0) >= (
                counted(*current) or 0.0):
            chosen[submission.user_id] = (submission, run)
    return chosen


def gradebook(assignment: Assignment, policy: str | None = None, user_id: int | None = None) -> dict[str, Any]:
    """Scores of every student enrolled in the assignment's course (null where nothing is graded yet), or only
    of student `user_id` (the instructor's page of one student: its work does not grow with the course)."""
    policy = policy or assignment.score_policy
    deliverables = assignment.active_deliverables
    students_query = (
        select(User)
        .join(Enrollment, Enrollment.user_id == User.id)
        .where(Enrollment.course_id == assignment.course_id, Enrollment.role == "student")
        .order_by(User.email)
    )
    counts_query = (
        select(Submission.user_id, func.count())
        .where(Submission.assignment_id == assignment.id)
        .group_by(Submission.user_id)
    )
    if user_id is not None:
        students_query = students_query.where(User.id == user_id)
        counts_query = counts_query.where(Submission.user_id == user_id)
    students = db.session.scalars(students_query).all()
    chosen = counted_runs(assignment, policy, user_id)
    counts = dict(db.session.execute(counts_query).all())
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
            "raw_score": None,
            "late_penalty": None,
            "credit": None,
            "late_seconds": None,
            "max_score": assignment.max_score,
            "deliverables": {d.slug: None for d in deliverables},
        }
        if student.id in chosen:
            submission, run = chosen[student.id]
            scores = by_run.get(run.id, {})
            row.update(
                submission_id=submission.id,
                submitted_at=submission.created_at.isoformat(),
                score=counted(submission, run),
                raw_score=run.score,
                late_penalty=_penalty(submission, run),
                credit=submission.credit,
                late_seconds=submission.late_seconds,
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
        # Whether late work can change a score here (the CSV and table then add raw and penalty columns).
        "late_work": bool(deadline_policy(assignment).late) or any(
            r["credit"] is not None and r["credit"] < 100 for r in rows),
        "deliverables": [{"id": d.slug, "title": d.title, "max_score": d.points} for d in deliverables],
        "students": rows,
    }


def _penalty(submission: Submission, run: GradingRun) -> float | None:
    """Points the late penalty took off (None when nothing is graded)."""
    score = counted(submission, run)
    return None if score is None or run.score is None else round(run.score - score, 4)
