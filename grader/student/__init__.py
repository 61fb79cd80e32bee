"""Student pages: assignments and history, upload, result. Plain HTML forms: everything works without JavaScript."""

from __future__ import annotations

from functools import wraps
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from werkzeug.wrappers import Response

from grader.auth.identity import current_user
from grader.auth.permissions import caller, course_role, submission_access
from grader.errors import NotFound, ServiceError
from grader.extensions import limiter
from grader.http_errors import status_of
from grader.services.assignments import find_assignment
from grader.services.queries import submissions_by, visible_assignments
from grader.services.submissions import describe, find_submission, single_file, submit

bp = Blueprint("student", __name__)


class UploadForm(FlaskForm):
    """One file."""

    file = FileField("Your file", validators=[FileRequired()])


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
    assignments = visible_assignments(user)
    submissions = submissions_by(user.id)
    return render_template("student/index.html", assignments=assignments, submissions=submissions)


def _upload_rate() -> str:
    from flask import current_app

    return current_app.config["GRADER_UPLOAD_RATE_LIMIT"]


@bp.route("/assignments/<assignment_id>/upload", methods=["GET", "POST"])
@login_required
@limiter.limit(_upload_rate, methods=["POST"])
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
            submission = submit(user, assignment, upload_file.filename or "", upload_file.read())
        except ServiceError as exc:
            flash(str(exc.detail), "error")
            return render_template("student/upload.html", assignment=assignment, form=form), status_of(exc)
        return redirect(url_for("student.submission", submission_id=submission.id))
    return render_template("student/upload.html", assignment=assignment, form=form)


@bp.get("/submissions/<int:submission_id>")
@login_required
def submission(submission_id: int) -> str:
    """A submission's status (refreshing itself while it waits) and result."""
    user = caller()
    found = find_submission(submission_id)
    api_url = url_for("api.get_submission", submission_id=found.id, _external=True)
    doc = describe(found, submission_access(user, found), api_url)
    return render_template("student/submission.html", submission=found, doc=doc)
