"""`POST /api/v1/lms/<NAME>/submissions`: an LMS hands us a submission, signed per Standard Webhooks.

Order matters: the signature is checked before anything is read or stored, and a webhook id already seen gets
the answer it got the first time (no second submission). Answers: 202 queued, 400/422 malformed (with the
reason), 401 bad signature or stale timestamp, 404 unknown integration or assignment, 409 while the same id is
still being processed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from pydantic import ValidationError
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from grader.api.openapi import inbound_operation
from grader.api.schemas import InboundSubmission
from grader.errors import NotFound, ServiceError, UploadRejected
from grader.extensions import csrf, db
from grader.lms.integrations import find_integration, verify_inbound
from grader.models import Assignment, Enrollment, Submission, User, utcnow
from grader.models.lms import LmsIntegration, LmsWebhookReceipt
from grader.services.assignments import find_assignment
from grader.services.submissions import submit

log = logging.getLogger(__name__)

bp = Blueprint("lms_api", __name__, url_prefix="/api/v1/lms")
# The caller is a server authenticated by its signature, not a browser with a cookie: CSRF does not apply.
csrf.exempt(bp)

# Replay records are kept long enough to cover an LMS's retries of one message (Standard Webhooks senders
# retry for days), then purged by `grader lms sweep`.
RECEIPT_RETENTION = timedelta(days=30)
# A receipt still unanswered after this long belongs to a request that died midway: it may be taken over.
STALE_RECEIPT = timedelta(minutes=2)


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
        return _answer(exc.status, exc.to_dict())
    body = request.get_data(cache=True)
    try:
        verify_inbound(integration, body, dict(request.headers))
    except ServiceError as exc:
        return _answer(exc.status, exc.to_dict())
    webhook_id = request.headers["webhook-id"]
    if len(webhook_id) > 255:
        return _answer(400, {"error": "bad_webhook_id", "detail": "webhook-id is longer than 255 characters"})

    receipt = db.session.scalar(
        select(LmsWebhookReceipt).where(
            LmsWebhookReceipt.integration_id == integration.id, LmsWebhookReceipt.webhook_id == webhook_id
        )
    )
    takeover_since = None
    if receipt is not None:
        replay = _replay(receipt)
        if replay is not None:
            return replay
        takeover_since = receipt.received_at
        # Conditional, so that of two retries arriving together only one takes the abandoned attempt over.
        taken = db.session.execute(
            update(LmsWebhookReceipt)
            .where(LmsWebhookReceipt.id == receipt.id, LmsWebhookReceipt.received_at == takeover_since)
            .values(received_at=utcnow())
        ).rowcount
        db.session.commit()
        if not taken:
            return _in_progress(webhook_id)
    else:
        receipt = LmsWebhookReceipt(integration_id=integration.id, webhook_id=webhook_id)
        db.session.add(receipt)
        try:
            db.session.commit()  # the unique (integration, webhook id) makes exactly one request the owner
        except IntegrityError:
            db.session.rollback()
            return _in_progress(webhook_id)

    try:
        submission = _process(integration, body, takeover_since)
        status, answer = 202, {"id": submission.id, "status": submission.status}
        receipt.submission_id = submission.id
    except ServiceError as exc:
        db.session.rollback()
        if exc.status >= 500:
            # A transient failure (queue down) must not be remembered: the LMS's retry should succeed.
            _forget(receipt)
            return _answer(exc.status, exc.to_dict())
        status, answer = exc.status, exc.to_dict()
    except Exception:
        db.session.rollback()
        _forget(receipt)  # an unexpected error (a 500) is not an answer to replay either
        raise
    receipt.status_code, receipt.response = status, answer
    db.session.commit()
    return _answer(status, answer)


def _in_progress(webhook_id: str) -> tuple[Response, int]:
    detail = f"webhook {webhook_id} is being processed; send it again shortly for its answer"
    return _answer(409, {"error": "in_progress", "detail": detail})


def _forget(receipt: LmsWebhookReceipt) -> None:
    db.session.execute(delete(LmsWebhookReceipt).where(LmsWebhookReceipt.id == receipt.id))
    db.session.commit()


def _replay(receipt: LmsWebhookReceipt) -> tuple[Response, int] | None:
    """The stored answer for a webhook id seen before; None when an abandoned attempt may be retried."""
    if receipt.status_code is not None and receipt.response is not None:
        return _answer(receipt.status_code, receipt.response)
    if utcnow() - receipt.received_at < STALE_RECEIPT:
        return _in_progress(receipt.webhook_id)
    log.warning("webhook %s: taking over an attempt abandoned since %s", receipt.webhook_id, receipt.received_at)
    return None


def _process(integration: LmsIntegration, body: bytes, takeover_since: datetime | None = None) -> Submission:
    """Validate the message, find or create the student, and submit through the normal path.

    `takeover_since`: an earlier attempt with this webhook id died at that time; if it got as far as creating
    the submission, that one is the answer (found by student, assignment, content and time).
    """
    doc = _parse(body)
    assignment = find_assignment(doc["assignment"])
    if assignment.course_id != integration.course_id:
        # Integrations are per course: another course's assignment is as good as unknown here.
        raise NotFound(f"unknown assignment {doc['assignment']!r} in course {integration.course.code}")
    user = _student(integration, doc["user"])
    name, data = _single_file(assignment, doc["files"])
    if takeover_since is not None and user.id is not None:
        earlier = db.session.scalar(
            select(Submission)
            .where(
                Submission.user_id == user.id,
                Submission.assignment_id == assignment.id,
                Submission.sha256 == hashlib.sha256(data).hexdigest(),
                Submission.created_at >= takeover_since,
                # ...and not the answer to another message (the same file may well be sent twice).
                Submission.id.not_in(
                    select(LmsWebhookReceipt.submission_id).where(LmsWebhookReceipt.submission_id.is_not(None))
                ),
            )
            .limit(1)
        )
        if earlier is not None:
            return earlier
    return submit(user, assignment, name, data)


_INVALID = {
    "user": "`user` must be an object with `external_id` and `email`",
    "user.external_id": "`user.external_id` must be a non-empty string (at most 255)",
    "user.email": "`user.email` must be an email address",
    "user.name": "`user.name` must be a string",
    "assignment": '`assignment` must be the assignment\'s id, e.g. "autograd"',
    "files": "`files` must map file names to base64 contents",
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


def _student(integration: LmsIntegration, person: dict[str, str]) -> User:
    """The user with this external id (created if new, linked by email if known), enrolled in the course.

    Nothing is committed here: `submit` commits the user together with the submission, and a refused upload
    rolls both back, so a rejected message leaves no account behind.
    """
    user = db.session.scalar(select(User).where(User.external_id == person["external_id"]))
    if user is None:
        user = db.session.scalar(select(User).where(User.email == person["email"]))
        if user is not None and user.external_id not in (None, person["external_id"]):
            raise ServiceError(
                f"{person['email']} already belongs to another external id",
                code="identity_conflict",
                status=409,
            )
        if user is None:
            user = User(email=person["email"], name=person["name"], role="student")
            db.session.add(user)
        # The integration is registered by an administrator for this LMS: its word on who is who is trusted.
        user.external_id = person["external_id"]
    enrolled = (
        db.session.scalar(
            select(Enrollment).where(Enrollment.user_id == user.id, Enrollment.course_id == integration.course_id)
        )
        if user.id is not None
        else None
    )
    if enrolled is None:
        db.session.add(Enrollment(user=user, course_id=integration.course_id, role="student"))
        db.session.flush()
    return user


def purge_receipts(older_than: timedelta = RECEIPT_RETENTION) -> int:
    """Delete replay records older than `older_than`; returns how many."""
    done = db.session.execute(
        delete(LmsWebhookReceipt).where(LmsWebhookReceipt.received_at < utcnow() - older_than)
    ).rowcount
    db.session.commit()
    return int(done or 0)
