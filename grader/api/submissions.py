"""Submission routes: upload (202 + queued), read one, list an assignment's."""

from __future__ import annotations

import time
from typing import Any

from flask import current_app, request, url_for

from grader.api import bp
from grader.api import schemas as s
from grader.api.openapi import operation
from grader.auth.identity import current_user
from grader.auth.permissions import caller, course_role, require_member, submission_access
from grader.database import db, loaded_once
from grader.errors import UnsupportedMedia
from grader.extensions import limiter
from grader.models import Submission, database_now
from grader.services.assignments import find_assignment
from grader.services.deadlines import student_policy
from grader.services.queries import assignment_submissions, page_start
from grader.services.submissions import describe, find_submission, sent_again, single_file, submit, upload_key


def _upload_rate() -> str:
    return current_app.config["GRADER_UPLOAD_RATE_LIMIT"]


def _sent_again() -> bool:
    """The upload rate limit neither refuses nor counts an upload sent again with its Idempotency-Key: it stores
    nothing, and a client whose answer was lost at the deadline must still learn that its upload was stored."""
    slug = (request.view_args or {}).get("assignment_id")
    return sent_again(current_user(), slug, request.headers.get("Idempotency-Key"), request.files.getlist("file"))


def submission_url(submission: Submission) -> str:
    """Where the API serves `submission`: its document's `url` and the upload answer's Location."""
    return url_for("api.get_submission", submission_id=submission.id, _external=True)


def read_upload() -> tuple[str, bytes]:
    """(client's file name, bytes) of the single multipart field `file`; UnsupportedMedia unless multipart."""
    if request.mimetype != "multipart/form-data":
        raise UnsupportedMedia(f"send multipart/form-data with a field 'file', not {request.mimetype or 'no body'}")
    upload = single_file(request.files.getlist("file"))
    # Read one byte past the limit: enough to tell "too large" without holding more than that.
    data = upload.stream.read(int(current_app.config["GRADER_MAX_UPLOAD_BYTES"]) + 1)
    return upload.filename or "", data


@bp.post("/assignments/<assignment_id>/submissions")
@operation("submissions", "createSubmission", {202: s.Queued}, (400, 401, 403, 404, 413, 415, 422, 429, 503))
@limiter.limit(_upload_rate, exempt_when=_sent_again)
def create_submission(assignment_id: str) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Upload a file for grading: 202 with the queued submission and where to poll it (the same submission again
    for the same upload sent again with its Idempotency-Key)."""
    user = caller()
    assignment = find_assignment(assignment_id)
    require_member(user, assignment.course)
    key = upload_key(request.headers.get("Idempotency-Key"))
    name, data = read_upload()
    received = time.monotonic()
    with loaded_once():  # the answer describes the rows the upload just wrote without loading them again
        submission = submit(user, assignment, name, data, key, received)
        doc = describe(submission, "owner", submission_url(submission))
        body = {"id": submission.id, "status": submission.status, "url": doc["url"]}
    if "queue_position" in doc:
        body["queue_position"] = doc["queue_position"]
    return body, 202, {"Location": doc["url"]}


@bp.get("/submissions/<int:submission_id>")
@operation("submissions", "getSubmission", {200: s.Submission}, (401, 403, 404))
def get_submission(submission_id: int) -> dict[str, Any]:
    """A submission's status (queue position while queued) and, once graded, its result."""
    user = caller()
    submission = find_submission(submission_id)
    return describe(submission, submission_access(user, submission), submission_url(submission))


@bp.get("/assignments/<assignment_id>/submissions")
@operation("submissions", "listSubmissions", {200: s.SubmissionList}, (400, 401, 403, 404), query=s.SubmissionsQuery)
def list_submissions(assignment_id: str) -> dict[str, Any]:
    """The caller's submissions to an assignment, newest first, a page at a time (`next` is the next page's URL);
    instructors get everyone's (`?email=` filters)."""
    user = caller()
    assignment = find_assignment(assignment_id)
    require_member(user, assignment.course)
    access = "instructor" if course_role(user, assignment.course) == "instructor" else "owner"
    mine = user.id if access == "owner" else None
    query: s.SubmissionsQuery = request.context.query  # type: ignore[attr-defined]  (spectree's, as validated)
    # The model's values, not the query string's text: the model takes `5.0` and ` 5 ` for 5, which int() refuses.
    email = query.email if access == "instructor" else None
    limit = query.limit
    after = page_start(query.after, assignment.id, mine)
    found = assignment_submissions(assignment.id, user_id=mine, email=email, after=after, limit=limit + 1,
                                   results=True)
    page = found[:limit]
    now = database_now(db.session)  # one clock reading for the whole list
    following = None
    if len(found) > limit:  # one row more than the page: there is a next page, after this page's last row
        args = {"email": email} if email else {}
        following = url_for("api.list_submissions", assignment_id=assignment_id, limit=limit, after=page[-1].id,
                            _external=True, **args)
    policy = student_policy(assignment, user.id) if access == "owner" else None  # (all of them the caller's)
    return {"submissions": [describe(s, access, submission_url(s), now, policy) for s in page], "next": following}
