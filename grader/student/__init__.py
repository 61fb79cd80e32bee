"""Student pages: assignments and history, upload, result. Plain HTML forms: everything works without JavaScript."""

from __future__ import annotations

import secrets
import time
from functools import wraps
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from werkzeug.wrappers import Response
from wtforms import HiddenField

from grader.auth.identity import current_user
from grader.auth.permissions import caller, course_role, submission_access
from grader.converters import query_id
from grader.errors import KeyReused, NotFound, ServiceError
from grader.extensions import limiter
from grader.http_errors import status_of
from grader.models import Assignment
from grader.services.assignments import find_assignment
from grader.services.queries import history, latest_submissions, place_of, taught_courses, visible_assignments
from grader.services.submissions import describe, find_submission, sent_again, single_file, submit, upload_key

bp = Blueprint("student", __name__)


class UploadForm(FlaskForm):
    """One file, and the form's own idempotency key: a second click, or the form sent again after its answer was
    lost, gets the submission the first one made."""

    file = FileField("Your file", validators=[FileRequired()])
    upload_key = HiddenField()


def _fresh_form(form: UploadForm) -> UploadForm:
    """`form` with a key of its own for the next upload it sends."""
    form.upload_key.data = secrets.token_urlsafe(24)
    return form


def login_required(view: Any) -> Any:
    """Send anonymous visitors to the login page, then back here."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if current_user() is None:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapped


@bp.get("/")
@login_required
def index() -> str:
    """The caller's assignments and their submissions, newest first."""
    user = caller()
    return render_template("student/index.html", assignments=visible_assignments(user),
                           taught={course.id for course in taught_courses(user)},
                           latest=latest_submissions(user.id),
                           history=history(user.id, after=query_id(request.args.get("after"))))


def _upload_rate() -> str:
    from flask import current_app

    return current_app.config["GRADER_UPLOAD_RATE_LIMIT"]


def _sent_again() -> bool:
    """The upload form sent again (a second click, a reload): answered with the submission it made, so the upload
    rate limit neither refuses nor counts it (the API's Idempotency-Key, `grader.api.submissions`)."""
    slug = (request.view_args or {}).get("assignment_id")
    return sent_again(current_user(), slug, request.form.get("upload_key") or None, request.files.getlist("file"))


@bp.route("/assignments/<assignment_id>/upload", methods=["GET", "POST"])
@login_required
@limiter.limit(_upload_rate, methods=["POST"], exempt_when=_sent_again)
def upload(assignment_id: str) -> str | Response | tuple[str, int]:
    """The upload form; a valid upload goes to its status page, a refused one shows why."""
    user = caller()
    assignment = find_assignment(assignment_id)
    if course_role(user, assignment.course) is None:
        raise NotFound(f"unknown assignment {assignment_id!r}")
    form = UploadForm()
    if request.method == "POST":
        # CSRF was checked before the view ran; what is left to refuse is the file part itself.
        try:
            upload_file = single_file(request.files.getlist("file"))
            name, data = upload_file.filename or "", upload_file.read()
            received = time.monotonic()
            key = upload_key(form.upload_key.data or None)
            try:
                submission = submit(user, assignment, name, data, key, received)
            except KeyReused:
                # This form, back from the browser's history, sent with another file: a new upload.
                submission = submit(user, assignment, name, data, received=received)
        except ServiceError as exc:
            flash(str(exc.detail), "error")
            return _upload_page(assignment, form, user.id), status_of(exc)
        return redirect(url_for("student.submission", submission_id=submission.id))
    return _upload_page(assignment, form, user.id)


def _upload_page(assignment: Assignment, form: UploadForm, user_id: int) -> str:
    """The upload form with a page of the caller's submissions to the assignment below it."""
    return render_template("student/upload.html", assignment=assignment, form=_fresh_form(form),
                           history=history(user_id, assignment.id, after=query_id(request.args.get("after"))))


@bp.get("/submissions/<int:submission_id>")
@login_required
def submission(submission_id: int) -> str:
    """A submission's status (refreshing itself while it waits) and result."""
    user = caller()
    found = find_submission(submission_id)
    api_url = url_for("api.get_submission", submission_id=found.id, _external=True)
    doc = describe(found, submission_access(user, found), api_url)
    after = query_id(request.args.get("after"))
    page = history(found.user_id, found.assignment_id, after=after)
    # An older submission than the newest page holds: offer the page that starts with it, so its row can be seen
    # among its neighbours (asked only for such a one, not at each refresh of a newest one waiting for a score).
    place = place_of(found) if after is None and found not in page.rows else None
    return render_template("student/submission.html", submission=found, doc=doc, history=page, place=place)
