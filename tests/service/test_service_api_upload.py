"""Uploading through the API: the accepted path, and every refusal leaving nothing behind."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, func, select

from grader.extensions import db
from grader.models import GradingRun, Submission, SubmissionFile
from tests.conftest import REFERENCE_SOLUTION, World, make_world, upload

SOURCE = b"def derivative(f, x):\n    return 0\n"


def stored_nothing(app: Flask) -> bool:
    """No submission row, no grading run, no file in the store, no message in the broker."""
    rows = db.session.scalar(select(func.count()).select_from(Submission))
    runs = db.session.scalar(select(func.count()).select_from(GradingRun))
    files = db.session.scalar(select(func.count()).select_from(SubmissionFile))
    return rows == 0 and runs == 0 and not files and not queued_messages(app)


def queued_messages(app: Flask) -> list[Path]:
    """Messages waiting in the embedded (filesystem) broker."""
    folder = Path(app.config["CELERY"]["broker_transport_options"]["data_folder_in"])
    return [p for p in folder.iterdir() if p.is_file() and p.name.endswith(".msg")]


def test_upload_is_stored_by_hash_and_queued(app: Flask, client: FlaskClient, world: World) -> None:
    """Does an upload answer 202 queued with a URL, store the bytes under their sha256, and queue one task?"""
    data = REFERENCE_SOLUTION.read_bytes()
    response = upload(client, "autograd", data, headers=world.student.headers)
    assert response.status_code == 202, response.json
    body = response.json
    assert body["status"] == "queued" and isinstance(body["id"], int)
    assert body["url"].endswith(f"/api/v1/submissions/{body['id']}")
    assert response.headers["Location"] == body["url"]
    submission = db.session.get(Submission, body["id"])
    assert submission.original_name == "solution.py" and submission.size == len(data)
    assert submission.sha256 == hashlib.sha256(data).hexdigest()
    stored = db.session.get(SubmissionFile, submission.sha256)
    assert stored is not None and bytes(stored.data) == data and stored.size == len(data)
    assert [run.status for run in submission.runs] == ["queued"] and submission.runs[0].queue == "cpu"
    assert len(queued_messages(app)) == 1


def test_an_upload_reads_back_none_of_the_rows_it_wrote(app: Flask, client: FlaskClient, world: World) -> None:
    """Does answering an upload load no row twice (its commits keep what the request loaded and wrote), with the
    answer still saying what was stored?"""
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement.split("\n")[0][:80])

    upload(client, "autograd", b"x = 1\n", headers=world.student.headers)  # another, earlier in the queue
    db.session.expunge_all()
    event.listen(db.engine, "before_cursor_execute", count)
    try:
        response = upload(client, "autograd", REFERENCE_SOLUTION.read_bytes(), headers=world.student.headers)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert response.status_code == 202 and response.json["queue_position"] == 2
    assert not any(s.startswith(("SELECT submission.", "SELECT grading_run.")) for s in statements), statements
    # The caller, the assignment and its course, membership (twice: before the body is read, and in the
    # service), enrollment lock, extension, earlier uploads, the file by hash; then the queue position, and the
    # caller once more for the request's log line (what the handler loaded is expired when it is done).
    assert len([s for s in statements if s.startswith("SELECT")]) <= 11, "\n".join(statements)
    assert db.session().expire_on_commit is True
    submission = db.session.get(Submission, response.json["id"])
    assert submission.status == "queued" and submission.runs[0].enqueued_at is not None


def test_file_of_exactly_the_limit_is_accepted(make_app: Callable[..., Flask]) -> None:
    """Is a file of exactly GRADER_MAX_UPLOAD_BYTES accepted (the limit is inclusive)?"""
    app = make_app(GRADER_MAX_UPLOAD_BYTES=2000)
    with app.app_context():
        student = make_world().student
        body = b"#" * 1999 + b"\n"
        response = upload(app.test_client(), "autograd", body, headers=student.headers)
        assert response.status_code == 202, response.json


def test_file_one_byte_over_the_limit_is_413(make_app: Callable[..., Flask]) -> None:
    """Is a file one byte over the limit refused with 413, storing nothing?"""
    app = make_app(GRADER_MAX_UPLOAD_BYTES=2000)
    with app.app_context():
        student = make_world().student
        response = upload(app.test_client(), "autograd", b"#" * 2000 + b"\n", headers=student.headers)
        assert response.status_code == 413
        assert response.json["error"] == "too_large" and "2000" in response.json["detail"]
        assert stored_nothing(app)


def test_request_far_over_the_limit_is_413(app: Flask, client: FlaskClient, world: World) -> None:
    """Is a request body far over the limit (default 1 MiB) cut off with 413 before it is read, storing nothing?"""
    # A hand-built body: the test client would spool a large `data=` file to a temporary file it never closes.
    boundary = "grader-test-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"solution.py\"\r\n"
            "Content-Type: text/x-python\r\n\r\n")
    body = head.encode() + b"x" * (3 * 1024 * 1024) + f"\r\n--{boundary}--\r\n".encode()
    response = client.post("/api/v1/assignments/autograd/submissions", data=body, headers=world.student.headers,
                           content_type=f"multipart/form-data; boundary={boundary}")
    assert response.status_code == 413
    assert set(response.json) == {"error", "detail"} and response.json["error"] == "too_large"
    assert stored_nothing(app)


@pytest.mark.parametrize(
    ("name", "content", "status", "error", "detail_part"),
    [
        ("answer.py", SOURCE, 422, "invalid_upload", "solution.py"),
        ("../../etc/solution.py", SOURCE, 422, "invalid_upload", "solution.py"),
        ("solution.py", b"x = '\xff\xfe'\n", 422, "invalid_upload", "UTF-8"),
        ("solution.py", b"x = 1\x00\n", 422, "invalid_upload", "NUL"),
        ("solution.py", b"  \n\n", 422, "empty_file", "empty"),
    ],
    ids=["wrong-name", "path-in-name", "not-utf8", "nul-bytes", "empty"],
)
def test_bad_file_is_refused(app: Flask, client: FlaskClient, world: World, name: str, content: bytes,
                             status: int, error: str, detail_part: str) -> None:
    """Is a wrongly named, non-UTF-8, binary or empty file refused with a clear reason, storing nothing?"""
    response = upload(client, "autograd", content, name=name, headers=world.student.headers)
    assert response.status_code == status, response.json
    assert response.json["error"] == error
    assert detail_part in response.json["detail"]
    assert stored_nothing(app)


def test_not_multipart_is_415(app: Flask, client: FlaskClient, world: World) -> None:
    """Is a JSON (not multipart) upload refused with 415, storing nothing?"""
    response = client.post("/api/v1/assignments/autograd/submissions", json={"file": "x"},
                           headers=world.student.headers)
    assert response.status_code == 415
    assert response.json["error"] == "unsupported_media_type"
    assert stored_nothing(app)


def test_missing_file_field_is_400(app: Flask, client: FlaskClient, world: World) -> None:
    """Is a multipart upload without a `file` field refused with 400, storing nothing?"""
    response = client.post("/api/v1/assignments/autograd/submissions", data={"other": "x"},
                           content_type="multipart/form-data", headers=world.student.headers)
    assert response.status_code == 400
    assert response.json["error"] == "missing_file"
    assert stored_nothing(app)


def test_two_files_are_400(app: Flask, client: FlaskClient, world: World) -> None:
    """Is an upload with two `file` parts refused (one submission is one file), storing nothing?"""
    from io import BytesIO

    response = client.post(
        "/api/v1/assignments/autograd/submissions",
        data={"file": [(BytesIO(SOURCE), "solution.py"), (BytesIO(SOURCE), "solution.py")]},
        content_type="multipart/form-data", headers=world.student.headers,
    )
    assert response.status_code == 400 and response.json["error"] == "missing_file"
    assert stored_nothing(app)


def test_unknown_assignment_is_404(app: Flask, client: FlaskClient, world: World) -> None:
    """Does an upload to an assignment that does not exist answer 404, storing nothing?"""
    response = upload(client, "no-such-assignment", SOURCE, headers=world.student.headers)
    assert response.status_code == 404
    assert response.json["error"] == "not_found" and "no-such-assignment" in response.json["detail"]
    assert stored_nothing(app)


def test_student_of_another_course_is_403(app: Flask, client: FlaskClient, world: World) -> None:
    """Can a student not enrolled in the assignment's course upload to it? (403, nothing stored)"""
    response = upload(client, "autograd", SOURCE, headers=world.outsider.headers)
    assert response.status_code == 403
    assert response.json["error"] == "forbidden"
    assert stored_nothing(app)


def test_anonymous_upload_is_401(app: Flask, client: FlaskClient, world: World) -> None:
    """Is an upload without credentials refused with 401, storing nothing?"""
    response = upload(client, "autograd", SOURCE)
    assert response.status_code == 401
    assert response.json["error"] == "unauthorized"
    assert stored_nothing(app)


def test_too_many_uploads_per_minute_is_429(make_app: Callable[..., Flask]) -> None:
    """Does the N+1th upload within a minute get 429 while another student is unaffected, storing nothing?"""
    app = make_app(GRADER_UPLOAD_RATE_LIMIT="3 per minute")
    with app.app_context():
        world = make_world()
        first, second = world.student, world.student2
        client = app.test_client()
        codes = [upload(client, "autograd", SOURCE, headers=first.headers).status_code for _ in range(3)]
        assert codes == [202, 202, 202]
        before = db.session.scalar(select(func.count()).select_from(Submission))
        refused = upload(client, "autograd", SOURCE, headers=first.headers)
        assert refused.status_code == 429
        assert refused.json["error"] == "rate_limited" and "3 per 1 minute" in refused.json["detail"]
        assert "Retry-After" in refused.headers
        assert db.session.scalar(select(func.count()).select_from(Submission)) == before
        assert upload(client, "autograd", SOURCE, headers=second.headers).status_code == 202


def test_broker_down_still_accepts_the_upload(make_app: Callable[..., Flask]) -> None:
    """When the broker cannot take the task, is the upload still accepted (202, stored with its run) and does
    the student read that grading starts when the queue is back?"""
    app = make_app(BROKER_URL="redis://127.0.0.1:1/0")
    with app.app_context():
        student = make_world().student
        client = app.test_client()
        response = upload(client, "autograd", SOURCE, headers=student.headers)
        assert response.status_code == 202, response.json
        submission = db.session.get(Submission, response.json["id"])
        assert submission.status == "queued" and submission.runs[0].enqueued_at is None
        assert db.session.get(SubmissionFile, submission.sha256) is not None
        body = client.get(response.json["url"], headers=student.headers).json
        assert body["status"] == "queued" and body["message"] == "queued; grading starts when the queue is back"


def test_database_down_is_503(make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch) -> None:
    """When the database refuses the upload's transaction, is it a 503 with nothing stored?"""
    from sqlalchemy.exc import OperationalError

    app = make_app()
    with app.app_context():
        student = make_world().student

        def down(*_: object, **__: object) -> None:
            raise OperationalError("INSERT", {}, Exception("server closed the connection unexpectedly"))

        monkeypatch.setattr(db.session, "commit", down)
        response = upload(app.test_client(), "autograd", SOURCE, headers=student.headers)
        monkeypatch.undo()
        assert response.status_code == 503 and response.json["error"] == "unavailable"
        assert "nothing was stored" in response.json["detail"]
        db.session.rollback()
        assert db.session.scalar(select(func.count()).select_from(Submission)) == 0
