"""`POST /api/v1/lms/<NAME>/submissions`: an LMS hands us a submission, signed per Standard Webhooks.

Order matters: the signature is checked before anything is read or stored, and a webhook id already seen gets
the answer it got the first time (no second submission). Answers: 202 queued, 400/422 malformed (with the
reason), 401 bad signature or stale timestamp, 404 unknown integration or assignment, 409 while the same id is
still being processed.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from pydantic import ValidationError

from grader.api.openapi import inbound_operation
from grader.api.schemas import InboundSubmission
from grader.errors import KeyReused, NotFound, ServiceError, UploadRejected
from grader.extensions import csrf, db
from grader.http_errors import status_of
from grader.lms import receipts, settings
from grader.lms.integrations import find_integration, verify_inbound
from grader.models import Assignment, Submission
from grader.models.lms import LmsIntegration
from grader.services.accounts import external_student
from grader.services.assignments import find_assignment
from grader.services.submissions import submit

bp = Blueprint("lms_api", __name__, url_prefix="/api/v1/lms")
# The caller is a server authenticated by its signature, not a browser with a cookie: CSRF does not apply.
csrf.exempt(bp)


def _answer(status: int, body: dict[str, Any]) -> tuple[Response, int]:
    return jsonify(body), status


@bp.post("/<name>/submissions")
@inbound_operation
def receive_submission(name: str) -> tuple[Response, int]:
    """Verify, de-duplicate and queue one submission sent by the LMS integration `name`."""
    # base64 inflates files by 4/3: allow the largest accepted file plus the JSON around it.
    request.max_content_length = int(current_app.config["GRADER_MAX_UPLOAD_BYTES"]) * 4 // 3 + 64 * 1024
    try:
        integration = find_integration(name)
    except NotFound as exc:
        return _answer(status_of(exc), exc.to_dict())
    body = request.get_data(cache=True)
    received = time.monotonic()  # the upload is judged as of now, however long the steps below take
    try:
        verify_inbound(integration, body, dict(request.headers))
    except ServiceError as exc:
        return _answer(status_of(exc), exc.to_dict())
    webhook_id = request.headers["webhook-id"]
    if len(webhook_id) > 255:
        return _answer(400, {"error": "bad_webhook_id", "detail": "webhook-id is longer than 255 characters"})

    owner = receipts.claim(integration, webhook_id)
    if owner.answer is not None:
        return _answer(*owner.answer)
    if owner.receipt is None:
        return _in_progress(webhook_id)
    receipt = owner.receipt
    try:
        submission = _process(integration, body, received, receipts.submission_key(integration, webhook_id))
        status, answer = 202, {"id": submission.id, "status": submission.status}
    except ServiceError as exc:
        db.session.rollback()
        status, answer = status_of(exc), exc.to_dict()
        if status >= 500:
            # A transient failure (queue down) must not be remembered: the LMS's retry should succeed.
            receipts.forget(receipt)
            return _answer(status, answer)
        submission = None
    except Exception:
        receipts.forget(receipt)  # an unexpected error (a 500) is not an answer to replay either
        raise
    receipts.answered(receipt, status, answer, submission.id if submission is not None else None)
    return _answer(status, answer)


def _in_progress(webhook_id: str) -> tuple[Response, int]:
    detail = f"webhook {webhook_id} is being processed; send it again shortly for its answer"
    return _answer(409, {"error": "in_progress", "detail": detail})


def _process(integration: LmsIntegration, body: bytes, received: float, key: str) -> Submission:
    """Validate the message, find or create the student, and submit through the normal path: judged as of
    `received` (a `time.monotonic()` reading taken once the body had arrived), or as of the LMS's own
    `submitted_at` when that is earlier (by at most GRADER_LMS_BACKDATE_LIMIT): the LMS's signature vouches for
    it as it does for who the student is, and a message the LMS had to retry past the due date (our outage, a
    slow network) must not make on-time work late.

    `key` is the message's idempotency key (`receipts.submission_key`): if an earlier attempt at this message
    died after storing its submission, that submission is the answer, and its grading is sent now if that
    attempt never sent it.
    """
    doc = _parse(body)
    assignment = find_assignment(doc["assignment"])
    if assignment.course_id != integration.course_id:
        # Integrations are per course: another course's assignment is as good as unknown here.
        raise NotFound(f"unknown assignment {doc['assignment']!r} in course {integration.course.code}")
    person = doc["user"]
    user = external_student(integration.course_id, person["external_id"], person["email"], person["name"])
    name, data = _single_file(assignment, doc["files"])
    try:
        return submit(user, assignment, name, data, key=key, received=received,
                      submitted_at=doc["submitted_at"], backdate_limit=settings.backdate_limit())
    except KeyReused:
        # Only a sender that reuses a webhook-id for another message (against Standard Webhooks) gets here.
        raise KeyReused("this webhook-id came with another message first; give each new message its own webhook-id",
                        code="webhook_id_reused") from None


_INVALID = {
    "user": "`user` must be an object with `external_id` and `email`",
    "user.external_id": "`user.external_id` must be a non-empty string (at most 255)",
    "user.email": "`user.email` must be an email address",
    "user.name": "`user.name` must be a string",
    "assignment": '`assignment` must be the assignment\'s id, e.g. "autograd"',
    "files": "`files` must map file names to base64 contents",
    "submitted_at": "`submitted_at` must be an RFC 3339 date and time with an offset, e.g. "
                    '"2026-12-05T23:59:30Z"',
}


def _parse(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ServiceError(f"the body is not JSON: {exc}", code="malformed_json") from None
    if not isinstance(doc, dict):
        raise UploadRejected("the body must be a JSON object", code="invalid_message")
    # The body's model is the one the OpenAPI document shows (grader.api.schemas.InboundSubmission).
    try:
        message = InboundSubmission.model_validate(doc)
    except ValidationError as exc:
        where = exc.errors()[0]["loc"]
        reason = _INVALID.get(".".join(str(part) for part in where[:2]), _INVALID.get(str(where[0]), ""))
        raise UploadRejected(reason or f"invalid message: {exc.errors()[0]['msg']}", code="invalid_message") from None
    user, assignment, files = message.user, message.assignment, message.files
    external_id, email = user.external_id, user.email
    return {
        "user": {
            "external_id": external_id.strip(),
            "email": email.strip().lower(),
            "name": str(user.name or "")[:200],
        },
        "assignment": assignment,
        "files": files,
        "submitted_at": message.submitted_at,
    }


def _single_file(assignment: Assignment, files: dict[str, str]) -> tuple[str, bytes]:
    if len(files) != 1:
        raise UploadRejected(
            f"{assignment.slug} takes exactly one file ({', '.join(assignment.files)}), got {len(files)}",
            code="wrong_file_count",
        )
    ((name, encoded),) = files.items()
    try:
        return name, base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise UploadRejected(f"files[{name!r}] is not valid base64", code="invalid_base64") from None
