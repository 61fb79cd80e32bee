"""`POST /api/v1/lms/<NAME>/submissions`: what an LMS gets for a signed, forged, stale, replayed or malformed
submission, and what is stored (student created or matched by external id, enrolled, submission queued)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from grader.extensions import db
from grader.lms import integrations
from grader.models import Enrollment, Submission, User
from grader.models.lms import LmsWebhookReceipt
from tests.conftest import REFERENCE_SOLUTION, World
from tests.support.lms_helpers import signed_headers, submission_body

URL = "/api/v1/lms/canvas/submissions"


@pytest.fixture
def secret(app: Flask, world: World) -> str:
    """The inbound secret of integration `canvas` on DEMO101."""
    _, secrets = integrations.add_integration("canvas", "DEMO101")
    assert secrets.inbound
    return secrets.inbound


def count(model: type) -> int:
    """Rows of `model`."""
    return int(db.session.scalar(select(func.count()).select_from(model)) or 0)


def test_signed_submission_is_queued_for_a_new_student(client: FlaskClient, secret: str) -> None:
    """Does a signed submission answer 202 queued, create the student by external id and enroll them?"""
    body = submission_body(REFERENCE_SOLUTION.read_bytes(), external_id="canvas-7", email="Ada@Example.edu")
    response = client.post(URL, data=body, headers=signed_headers(secret, body))
    assert response.status_code == 202, response.json
    assert response.json["status"] == "queued" and isinstance(response.json["id"], int)
    submission = db.session.get(Submission, response.json["id"])
    user = submission.user
    assert (user.external_id, user.email, user.role) == ("canvas-7", "ada@example.edu", "student")
    enrollment = db.session.scalar(select(Enrollment).where(Enrollment.user_id == user.id))
    assert enrollment.course.code == "DEMO101" and enrollment.role == "student"
    assert [run.status for run in submission.runs] == ["queued"]


def test_known_external_id_is_matched_not_duplicated(client: FlaskClient, secret: str, world: World) -> None:
    """Is a student the service already knows (by external id) matched, with no second account?"""
    users = count(User)
    body = submission_body(b"def derivative(f, x):\n    return 0\n", external_id="lms-student-1",
                           email="student@example.edu")
    response = client.post(URL, data=body, headers=signed_headers(secret, body))
    assert response.status_code == 202, response.json
    assert db.session.get(Submission, response.json["id"]).user_id == world.student.user.id
    assert count(User) == users


def test_replay_gets_the_same_answer_and_no_second_submission(client: FlaskClient, secret: str) -> None:
    """Does the same webhook-id sent again get the identical answer without creating a second submission —
    even when re-signed with a fresh timestamp (an LMS retry)?"""
    body = submission_body(REFERENCE_SOLUTION.read_bytes())
    headers = signed_headers(secret, body, msg_id="msg_retry_me")
    first = client.post(URL, data=body, headers=headers)
    again = client.post(URL, data=body, headers=headers)
    later = client.post(URL, data=body, headers=signed_headers(secret, body, msg_id="msg_retry_me",
                                                                when=datetime.now(UTC) + timedelta(seconds=30)))
    assert first.status_code == again.status_code == later.status_code == 202
    assert first.json == again.json == later.json
    assert count(Submission) == 1 and count(LmsWebhookReceipt) == 1


def test_replayed_refusal_is_the_same_refusal(client: FlaskClient, secret: str) -> None:
    """Is a refused message's answer (here 404, unknown assignment) also replayed unchanged?"""
    body = submission_body(b"x = 1\n", assignment="no-such-assignment")
    headers = signed_headers(secret, body)
    first, again = client.post(URL, data=body, headers=headers), client.post(URL, data=body, headers=headers)
    assert first.status_code == again.status_code == 404 and first.json == again.json


@pytest.mark.parametrize(
    "tamper",
    ["body", "secret", "stale", "future", "unsigned"],
)
def test_forged_stale_or_unsigned_messages_get_401_and_store_nothing(client: FlaskClient, secret: str,
                                                                     tamper: str) -> None:
    """Is a forged body, a wrong secret, a timestamp over 5 minutes off or a missing signature a 401 that
    stores nothing (no submission, no user, no replay record)?"""
    users = count(User)
    body = submission_body(REFERENCE_SOLUTION.read_bytes())
    when = datetime.now(UTC) + timedelta(minutes={"stale": -6, "future": 6}.get(tamper, 0))
    headers = signed_headers("whsec_" + "B" * 43 if tamper == "secret" else secret, body, when=when)
    if tamper == "body":
        body = body.replace(b"canvas-user-42", b"canvas-user-43")
    if tamper == "unsigned":
        headers.pop("webhook-signature")
    response = client.post(URL, data=body, headers=headers)
    assert response.status_code == 401 and response.json["error"] == "bad_signature"
    assert count(Submission) == 0 and count(LmsWebhookReceipt) == 0 and count(User) == users


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "malformed_json"),
        (b"[1, 2]", 422, "invalid_message"),
        (json.dumps({"assignment": "autograd", "files": {"solution.py": "eA=="}}).encode(), 422, "invalid_message"),
        (json.dumps({"user": {"external_id": "x", "email": "not-an-email"}, "assignment": "autograd",
                     "files": {"solution.py": "eA=="}}).encode(), 422, "invalid_message"),
        (json.dumps({"user": {"external_id": "x", "email": "x@example.edu"}, "assignment": "autograd",
                     "files": {"solution.py": "%%%"}}).encode(), 422, "invalid_base64"),
        (json.dumps({"user": {"external_id": "x", "email": "x@example.edu"}, "assignment": "autograd",
                     "files": {"a.py": "eA==", "b.py": "eA=="}}).encode(), 422, "wrong_file_count"),
        # These two are the service's own upload checks: its reason code, whatever it is, is passed through.
        (submission_body(b"x = 1\n", name="notes.txt"), 422, None),
        (submission_body(b"\xff\xfe not utf-8"), 422, None),
        (submission_body(b"x = 1\n", assignment="nope"), 404, "not_found"),
    ],
)
def test_malformed_messages_get_the_reason(client: FlaskClient, secret: str, body: bytes, status: int,
                                           code: str | None) -> None:
    """Does a signed but malformed message get 400/422 (or 404 for an unknown assignment) naming the reason,
    and leave no submission and no new student behind?"""
    users = count(User)
    response = client.post(URL, data=body, headers=signed_headers(secret, body))
    assert response.status_code == status, response.json
    assert response.json["error"] == (code or response.json["error"]) and response.json["detail"]
    assert count(Submission) == 0 and count(User) == users


def test_assignment_of_another_course_is_unknown_here(client: FlaskClient, secret: str, factory) -> None:  # type: ignore[no-untyped-def]
    """Can an integration of DEMO101 submit to another course's assignment? (No: 404.)"""
    from grader.models import Assignment

    other = factory.course("OTHER200")
    assignment = db.session.scalar(select(Assignment).where(Assignment.slug == "autograd"))
    assignment.course = other
    db.session.commit()
    body = submission_body(b"x = 1\n")
    response = client.post(URL, data=body, headers=signed_headers(secret, body))
    assert response.status_code == 404 and count(Submission) == 0


def test_unknown_integration_is_404(client: FlaskClient, secret: str) -> None:
    """Does a message to an integration that does not exist get 404 (and no CSRF or auth error)?"""
    body = submission_body(b"x = 1\n")
    response = client.post("/api/v1/lms/moodle/submissions", data=body, headers=signed_headers(secret, body))
    assert response.status_code == 404 and response.json["error"] == "not_found"


def test_email_of_another_external_id_is_a_conflict(client: FlaskClient, secret: str, world: World) -> None:
    """Is a message whose email belongs to a user with a different external id refused (409), not merged?"""
    body = submission_body(b"x = 1\n", external_id="someone-else", email="student@example.edu")
    response = client.post(URL, data=body, headers=signed_headers(secret, body))
    assert response.status_code == 409 and response.json["error"] == "identity_conflict"


def test_queue_outage_still_accepts_the_message(client: FlaskClient, secret: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """When the queue is down, is the LMS's message still accepted (202: the database is the record), and a
    retry with the same webhook-id replayed rather than stored twice?"""
    from celery import Celery

    def broken(*_: object, **__: object) -> None:
        """A broker that is down."""
        raise ConnectionError("broker down")

    monkeypatch.setattr(Celery, "send_task", broken)
    body = submission_body(REFERENCE_SOLUTION.read_bytes())
    headers = signed_headers(secret, body, msg_id="msg_outage")
    assert client.post(URL, data=body, headers=headers).status_code == 202
    monkeypatch.undo()
    retry = client.post(URL, data=body, headers=headers)
    assert retry.status_code == 202 and count(Submission) == 1


def test_inbound_route_is_in_the_openapi_document(client: FlaskClient) -> None:
    """Does /api/v1/openapi.json describe the LMS route?"""
    paths = client.get("/api/v1/openapi.json").json["paths"]
    assert "post" in paths["/api/v1/lms/{name}/submissions"]


def test_abandoned_attempt_is_taken_over_without_a_second_submission(client: FlaskClient, secret: str) -> None:
    """When a first attempt died midway (its replay record has no answer), is a retry told 409 while the
    attempt may still be running, and after that answered with the submission the dead attempt created
    (none twice) — or processed afresh if it created none?"""
    from grader.lms.integrations import find_integration
    from grader.models import utcnow

    body = submission_body(REFERENCE_SOLUTION.read_bytes())
    headers = signed_headers(secret, body, msg_id="msg_crashed")
    first = client.post(URL, data=body, headers=headers)
    receipt = db.session.scalar(select(LmsWebhookReceipt))
    # As if the process died after creating the submission, before recording the answer (one commit).
    receipt.status_code, receipt.response, receipt.submission_id = None, None, None
    db.session.commit()
    assert client.post(URL, data=body, headers=headers).status_code == 409
    receipt.received_at = utcnow() - timedelta(minutes=5)
    db.session.commit()
    retried = client.post(URL, data=body, headers=headers)
    assert retried.status_code == 202 and retried.json == first.json and count(Submission) == 1

    integration = find_integration("canvas")
    db.session.add(LmsWebhookReceipt(integration_id=integration.id, webhook_id="msg_died_early",
                                     received_at=utcnow() - timedelta(minutes=5)))
    db.session.commit()
    fresh = client.post(URL, data=body, headers=signed_headers(secret, body, msg_id="msg_died_early"))
    assert fresh.status_code == 202 and fresh.json["id"] != first.json["id"] and count(Submission) == 2


def test_a_webhook_id_taken_over_with_another_message_is_refused_in_the_lms_s_terms(client: FlaskClient,
                                                                                   secret: str) -> None:
    """When an attempt died after storing its submission and a later message under the same webhook-id carries
    another file (a sender reusing ids, against Standard Webhooks), is it refused with 422 `webhook_id_reused`, in
    webhook terms, with nothing stored?"""
    first = submission_body(REFERENCE_SOLUTION.read_bytes())
    assert client.post(URL, data=first, headers=signed_headers(secret, first, msg_id="msg_reused")).status_code == 202
    receipt = db.session.scalar(select(LmsWebhookReceipt))
    # As if the process died before recording the answer, long enough ago to count as abandoned.
    receipt.status_code, receipt.response, receipt.submission_id = None, None, None
    receipt.received_at -= timedelta(minutes=5)
    db.session.commit()
    other = submission_body(b"def derivative(f, x):\n    return 0\n")
    answer = client.post(URL, data=other, headers=signed_headers(secret, other, msg_id="msg_reused"))
    assert answer.status_code == 422 and answer.json["error"] == "webhook_id_reused", answer.json
    assert "webhook-id" in answer.json["detail"] and count(Submission) == 1
