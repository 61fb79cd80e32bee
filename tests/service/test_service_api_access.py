"""Who may see what through the API: tokens, sessions, CSRF, students, instructors."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from grader.auth.identity import hash_token, session_values
from grader.extensions import db
from grader.models import Submission, User
from tests.conftest import REFERENCE_SOLUTION, World, upload


def _submission(client: FlaskClient, world: World) -> int:
    response = upload(client, "autograd", REFERENCE_SOLUTION.read_bytes(), headers=world.student.headers)
    assert response.status_code == 202
    return int(response.json["id"])


def test_no_credentials_is_401(client: FlaskClient, world: World) -> None:
    """Does every API route answer 401 with a JSON error to a caller without credentials?"""
    for path in ("/api/v1/me", "/api/v1/assignments", "/api/v1/assignments/autograd",
                 "/api/v1/assignments/autograd/scores", "/api/v1/submissions/1",
                 "/api/v1/assignments/autograd/submissions"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.json["error"] == "unauthorized" and response.json["detail"]


def test_bad_or_malformed_token_is_401(client: FlaskClient, world: World) -> None:
    """Is a wrong token, a non-bearer scheme or an empty bearer refused with 401?"""
    for header in ("Bearer grd_not-a-real-token", "Basic dXNlcjpwYXNz", "Bearer ", world.student.token):
        response = client.get("/api/v1/me", headers={"Authorization": header})
        assert response.status_code == 401, header


def test_tokens_are_stored_hashed(app: Flask, world: World) -> None:
    """Is only the sha256 of an API token stored, never the token itself?"""
    user = db.session.scalar(select(User).where(User.email == world.student.email))
    assert user.api_token_hash == hash_token(world.student.token)
    assert world.student.token not in (user.api_token_hash or "")
    assert user.password_hash and world.student.password not in user.password_hash


def test_token_identifies_the_caller(client: FlaskClient, world: World) -> None:
    """Does /api/v1/me name the token's owner and their courses?"""
    body = client.get("/api/v1/me", headers=world.instructor.headers).json
    assert body["email"] == "instructor@example.edu"
    assert body["courses"] == [{"code": "DEMO101", "role": "instructor"}]


def test_another_students_submission_is_404(client: FlaskClient, world: World) -> None:
    """Can a student read another student's submission? (404: its existence is not revealed)"""
    submission_id = _submission(client, world)
    response = client.get(f"/api/v1/submissions/{submission_id}", headers=world.student2.headers)
    assert response.status_code == 404 and response.json["error"] == "not_found"
    assert client.get(f"/api/v1/submissions/{submission_id}", headers=world.outsider.headers).status_code == 404
    assert client.get("/api/v1/submissions/999999", headers=world.student.headers).status_code == 404


def test_instructor_sees_own_course_submissions_only(client: FlaskClient, world: World) -> None:
    """Can an instructor read submissions of their course (200) but not of another course (403)?"""
    submission_id = _submission(client, world)
    own = client.get(f"/api/v1/submissions/{submission_id}", headers=world.instructor.headers)
    assert own.status_code == 200 and own.json["user"]["email"] == world.student.email
    other = client.get(f"/api/v1/submissions/{submission_id}", headers=world.other_instructor.headers)
    assert other.status_code == 403 and other.json["error"] == "forbidden"


def test_scores_are_for_the_courses_instructors_only(client: FlaskClient, world: World) -> None:
    """Are scores refused to students (403) and to instructors of other courses (403), and 404 if unknown?"""
    assert client.get("/api/v1/assignments/autograd/scores", headers=world.student.headers).status_code == 403
    other = client.get("/api/v1/assignments/autograd/scores", headers=world.other_instructor.headers)
    assert other.status_code == 403 and other.json["error"] == "forbidden"
    unknown = client.get("/api/v1/assignments/nope/scores", headers=world.instructor.headers)
    assert unknown.status_code == 404 and unknown.json["error"] == "not_found"
    bad = client.get("/api/v1/assignments/autograd/scores?policy=worst", headers=world.instructor.headers)
    assert bad.status_code == 400 and bad.json["error"] == "bad_policy"


def test_listing_shows_students_their_own_and_instructors_everyones(client: FlaskClient, world: World) -> None:
    """Does the submissions list give a student only theirs, and an instructor everyone's (filterable)?"""
    _submission(client, world)
    upload(client, "autograd", b"x = 1\n", headers=world.student2.headers)
    mine = client.get("/api/v1/assignments/autograd/submissions", headers=world.student2.headers).json
    assert [s["user"]["email"] for s in mine["submissions"]] == [world.student2.email]
    everyone = client.get("/api/v1/assignments/autograd/submissions", headers=world.instructor.headers).json
    assert len(everyone["submissions"]) == 2
    one = client.get("/api/v1/assignments/autograd/submissions?email=STUDENT@example.edu",
                     headers=world.instructor.headers).json
    assert [s["user"]["email"] for s in one["submissions"]] == [world.student.email]


def test_assignment_describes_what_to_upload(client: FlaskClient, world: World) -> None:
    """Does the assignment document give the accepted file names and the size limit (for client-side checks)?"""
    body = client.get("/api/v1/assignments/autograd", headers=world.student.headers).json
    assert body["files"] == ["solution.py"] and body["max_upload_bytes"] == 1_048_576
    assert body["max_score"] == 100.0 and len(body["deliverables"]) == 5
    listing = client.get("/api/v1/assignments", headers=world.outsider.headers).json
    assert listing == {"assignments": []}
    assert client.get("/api/v1/assignments/autograd", headers=world.outsider.headers).status_code == 403


def test_session_caller_needs_a_csrf_token_to_upload(app: Flask, client: FlaskClient, world: World) -> None:
    """Is a session-authenticated upload without a CSRF token refused (400), and accepted with one?"""
    with client.session_transaction() as session:
        session.update(session_values(world.student.user))
    assert client.get("/api/v1/me").json["email"] == world.student.email
    refused = upload(client, "autograd", b"x = 1\n")
    assert refused.status_code == 400 and refused.json["error"] == "csrf_failed"
    assert db.session.scalar(select(Submission.id)) is None
    page = client.get("/").get_data(as_text=True)
    token = re.search(r'<meta name="csrf-token" content="([^"]+)"', page).group(1)
    accepted = upload(client, "autograd", b"x = 1\n", headers={"X-CSRFToken": token})
    assert accepted.status_code == 202, accepted.json


def test_unknown_api_route_answers_json(client: FlaskClient, world: World) -> None:
    """Does an unknown API path or wrong method answer a JSON error, not an HTML page?"""
    missing = client.get("/api/v1/nothing-here", headers=world.student.headers)
    assert missing.status_code == 404 and missing.json["error"] == "not_found"
    wrong = client.delete("/api/v1/me", headers=world.student.headers)
    assert wrong.status_code == 405 and wrong.json["error"] == "method_not_allowed"
