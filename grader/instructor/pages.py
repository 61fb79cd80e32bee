"""Instructor pages (GET): courses, an assignment's overview and table, a student's history, a submission."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, render_template, request

from grader.auth.permissions import caller, course_role, require_instructor, taught_assignment
from grader.converters import query_id
from grader.errors import NotFound
from grader.instructor import bp, instructor_required
from grader.instructor.highlight import highlight_source
from grader.instructor.stats import overview
from grader.instructor.table import Sort, gradebook_csv, matches, points_possible_row, sort_rows
from grader.models import GradingRun, Submission
from grader.services.deadlines import standing
from grader.services.queries import (
    course_members,
    find_course,
    get_user,
    history,
    in_progress_by_user,
    open_regrade_of,
    regrades_of,
    status_counts,
    taught_courses,
)
from grader.services.queue import queue_state
from grader.services.scores import gradebook
from grader.services.storage import StorageError, store
from grader.services.submissions import find_submission

RECENT_REGRADES = 5  # on the assignment page, which links to the regrades page when there are more
REGRADE_PAGE = 25  # the regrades page, a page at a time
STUDENT_PAGE = 50  # of one student's submissions on their instructor's page


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
    return render_template("instructor/index.html", cards=cards, queue=queue_state())


@bp.get("/courses/<code>")
@instructor_required
def course(code: str) -> str:
    """One course: its assignments with counts, mean and median, and the grading queue."""
    found = find_course(code)
    require_instructor(caller(), found)
    assignments = [overview(a) for a in sorted(found.assignments, key=lambda a: a.slug)]
    ids = [a.id for a in found.assignments]
    return render_template("instructor/course.html", course=found, assignments=assignments,
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
    users = course_members(found.course_id)
    regrades = regrades_of(found.id, RECENT_REGRADES)
    return render_template(
        "instructor/assignment.html", a=found, view=view, rows=rows, sort=sort, q=query, users=users,
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
    """One student's submissions to the assignment, newest first and a page at a time, which one counts, and
    where they stand (their due date and any extension, submissions and grace days left, whether an upload from
    them now would be taken): what an instructor asked for an extension or a resubmission needs to see."""
    found = taught_assignment(slug)
    person = get_user(user_id)
    role = course_role(person, found.course) if person is not None else None
    if person is None or role is None:
        raise NotFound(f"no student {user_id} in {found.course.code}")
    page = history(person.id, found.id, after=query_id(request.args.get("after")), limit=STUDENT_PAGE)
    row = next(iter(gradebook(found, user_id=person.id)["students"]), None)  # (none for a course's instructor)
    return render_template("instructor/student.html", a=found, person=person, page=page,
                           counted=row["submission_id"] if row else None, row=row,
                           st=standing(found, person.id) if role == "student" else None)


@bp.get("/assignments/<slug>/regrades")
@instructor_required
def regrades(slug: str) -> str:
    """Every regrade of the assignment, newest first, a page at a time (its own page shows the newest few)."""
    found = taught_assignment(slug)
    return render_template("instructor/regrades.html", a=found,
                           page=regrades_of(found.id, REGRADE_PAGE, query_id(request.args.get("after"))))


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
    open_regrade = open_regrade_of(found.id)
    return render_template("instructor/submission.html", s=found, run=run, source=source,
                           source_error=source_error, tests=_tests_of(run), open_regrade=open_regrade)


def _chosen_run(found: Submission, number: str | None) -> GradingRun | None:
    """The run asked for by ?run=N, else the published one, else the newest."""
    if number and number.isascii() and number.isdigit():  # ("²" is a digit too, which int() refuses)
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
