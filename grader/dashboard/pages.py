"""Instructor pages (GET): courses, an assignment's overview and table, a student's history, a submission."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, render_template, request
from sqlalchemy import select

from grader.auth.permissions import caller, course_role, require_instructor
from grader.dashboard import bp, instructor_required
from grader.dashboard.highlight import highlight_source
from grader.dashboard.queue import queue_state
from grader.dashboard.stats import in_progress_by_user, overview, status_counts
from grader.dashboard.table import Sort, gradebook_csv, matches, points_possible_row, sort_rows
from grader.database import db
from grader.errors import NotFound
from grader.models import Assignment, Course, Enrollment, GradingRun, Submission, User
from grader.models.regrades import Regrade, RegradeItem
from grader.services.assignments import find_assignment
from grader.services.storage import StorageError, store
from grader.services.submissions import find_submission


def taught_courses(user: User) -> list[Course]:
    """Courses `user` teaches (every course for admins), by code."""
    query = select(Course).order_by(Course.code)
    if not user.is_admin:
        query = query.join(Enrollment, Enrollment.course_id == Course.id).where(
            Enrollment.user_id == user.id, Enrollment.role == "instructor"
        )
    return list(db.session.scalars(query))


def find_course(code: str) -> Course:
    """The course with this code, or NotFound."""
    course = db.session.scalar(select(Course).where(Course.code == code))
    if course is None:
        raise NotFound(f"no course {code!r}")
    return course


def taught_assignment(slug: str) -> Assignment:
    """The assignment `slug`, when the caller teaches its course."""
    assignment = find_assignment(slug)
    require_instructor(caller(), assignment.course)
    return assignment


@bp.get("/")
@instructor_required
def index() -> str:
    """The courses the instructor teaches, each with its assignments and how grading is going."""
    courses = taught_courses(caller())
    cards = []
    for course in courses:
        ids = [a.id for a in course.assignments]
        cards.append({"course": course, "counts": status_counts(ids),
                      "assignments": [overview(a) for a in sorted(course.assignments, key=lambda a: a.slug)]})
    return render_template("dashboard/index.html", cards=cards, queue=queue_state())


@bp.get("/courses/<code>")
@instructor_required
def course(code: str) -> str:
    """One course: its assignments with counts, mean and median, and the grading queue."""
    found = find_course(code)
    require_instructor(caller(), found)
    assignments = [overview(a) for a in sorted(found.assignments, key=lambda a: a.slug)]
    ids = [a.id for a in found.assignments]
    return render_template("dashboard/course.html", course=found, assignments=assignments,
                           counts=status_counts(ids), queue=queue_state())


@bp.get("/assignments/<slug>")
@instructor_required
def assignment(slug: str) -> str:
    """The assignment page: numbers, histograms, the students-by-deliverables table, regrade controls."""
    found = taught_assignment(slug)
    view = overview(found)
    ids = [d["id"] for d in view.book["deliverables"]]
    sort = Sort.parse(request.args.get("sort"), request.args.get("dir"), ids)
    query = request.args.get("q", "")
    rows = sort_rows([r for r in view.book["students"] if matches(r, query)], sort)
    users = {u.email: u for u in db.session.scalars(
        select(User)
        .join(Enrollment, Enrollment.user_id == User.id)
        .where(Enrollment.course_id == found.course_id)
    )}
    regrades = db.session.scalars(
        select(Regrade).where(Regrade.assignment_id == found.id).order_by(Regrade.id.desc()).limit(5)
    ).all()
    return render_template(
        "dashboard/assignment.html", a=found, view=view, rows=rows, sort=sort, q=query, users=users,
        busy=in_progress_by_user(found), queue=queue_state([found.id]), regrades=regrades,
        possible=points_possible_row(view.book),
    )


@bp.get("/assignments/<slug>/gradebook.csv")
@instructor_required
def gradebook_export(slug: str) -> Response:
    """The gradebook as CSV (one row per student; a column per deliverable and the total)."""
    found = taught_assignment(slug)
    view = overview(found)
    name = f"{found.course.code}-{found.slug}-gradebook.csv".replace(" ", "_")
    return Response(
        gradebook_csv(view.book),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )


@bp.get("/assignments/<slug>/students/<int:user_id>")
@instructor_required
def student(slug: str, user_id: int) -> str:
    """One student's submissions to the assignment, newest first, and which one counts."""
    found = taught_assignment(slug)
    person = db.session.get(User, user_id)
    if person is None or course_role(person, found.course) is None:
        raise NotFound(f"no student {user_id} in {found.course.code}")
    submissions = db.session.scalars(
        select(Submission)
        .where(Submission.assignment_id == found.id, Submission.user_id == person.id)
        .order_by(Submission.created_at.desc(), Submission.id.desc())
    ).all()
    row = next((r for r in overview(found).book["students"] if r["email"] == person.email), None)
    return render_template("dashboard/student.html", a=found, person=person, submissions=submissions,
                           counted=row["submission_id"] if row else None, row=row)


@bp.get("/submissions/<int:submission_id>")
@instructor_required
def submission(submission_id: int) -> str:
    """A submission in full: highlighted file, every test with status, points and output, timings, runner."""
    found = find_submission(submission_id)
    require_instructor(caller(), found.assignment.course)
    run = _chosen_run(found, request.args.get("run"))
    try:
        text = store().get(found.sha256).decode("utf-8", errors="replace")
        source, source_error = highlight_source(found.original_name, text), None
    except StorageError as exc:
        current_app.logger.warning("submission %s: %s", found.id, exc)
        source, source_error = None, "The stored file is missing or damaged; its grading results remain."
    open_regrade = db.session.scalar(
        select(Regrade)
        .join(RegradeItem, RegradeItem.regrade_id == Regrade.id)
        .where(Regrade.state == "open", RegradeItem.submission_id == found.id)
        .order_by(Regrade.id.desc())
        .limit(1)
    )
    return render_template("dashboard/submission.html", s=found, run=run, source=source,
                           source_error=source_error, tests=_tests_of(run), open_regrade=open_regrade)


def _chosen_run(found: Submission, number: str | None) -> GradingRun | None:
    """The run asked for by ?run=N, else the published one, else the newest."""
    if number and number.isdigit():
        for run in found.runs:
            if run.number == int(number):
                return run
        raise NotFound(f"submission {found.id} has no run {number}")
    return found.published_run or (found.runs[-1] if found.runs else None)


def _tests_of(run: GradingRun | None) -> list[dict[str, Any]]:
    """The run's deliverables with their tests (from the stored result document), in manifest order."""
    if run is None or not run.result:
        return []
    return list(run.result.get("deliverables", []))
