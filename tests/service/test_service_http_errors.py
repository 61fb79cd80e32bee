"""Requests that used to answer 500: huge ids, wrong methods, a failed transaction, a rate-limit store that is
down, a web upload without (or with two) files. Each now gets a clear 4xx or 503."""

from __future__ import annotations

from collections.abc import Callable
from io import BytesIO

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, text

from grader.extensions import db
from grader.models import Submission
from grader.models.types import MAX_ID
from tests.conftest import REFERENCE_SOLUTION, World, make_world, upload
from tests.service.test_service_pages import csrf_token, log_in


@pytest.mark.parametrize("number", [MAX_ID + 1, 10**20])
def test_an_id_too_large_for_the_database_is_404(client: FlaskClient, world: World, number: int) -> None:
    """Is a submission id beyond what the database holds a 404 on the API and on the web page, not a 500?"""
    api = client.get(f"/api/v1/submissions/{number}", headers=world.student.headers)
    assert api.status_code == 404 and api.json["error"] == "not_found"
    log_in(client, world.student.email, world.student.password)
    assert client.get(f"/submissions/{number}").status_code == 404
    assert client.get(f"/instructor/submissions/{number}").status_code == 404


def test_the_largest_id_is_an_ordinary_404(client: FlaskClient, world: World) -> None:
    """Does MAX_ID itself reach the database and come back "no such submission"?"""
    response = client.get(f"/api/v1/submissions/{MAX_ID}", headers=world.student.headers)
    assert response.status_code == 404 and str(MAX_ID) in response.json["detail"]


def test_the_openapi_document_bounds_ids(client: FlaskClient) -> None:
    """Does the OpenAPI document say how large an id may be?"""
    document = client.get("/api/v1/openapi.json").json
    parameter = document["paths"]["/api/v1/submissions/{submission_id}"]["get"]["parameters"][0]
    assert parameter["schema"]["maximum"] == MAX_ID == 2**63 - 1


def test_a_wrong_method_is_405_with_allow(client: FlaskClient, world: World) -> None:
    """Does a wrong method answer 405 and still say, in Allow, which methods the URL takes?"""
    response = client.delete("/api/v1/submissions/1", headers=world.student.headers)
    assert response.status_code == 405 and response.json["error"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]
    page = client.put("/login")
    assert page.status_code == 405 and "POST" in page.headers["Allow"]


def test_the_error_page_survives_a_failed_transaction(app: Flask, client: FlaskClient, world: World) -> None:
    """After a statement fails mid-request, does the error page still render (the session is rolled back first)
    with a clear status instead of gunicorn's bare page?"""

    @app.get("/boom-for-test")
    def boom() -> str:
        db.session.execute(text("SELECT * FROM no_such_table"))
        return "unreachable"

    log_in(client, world.student.email, world.student.password)
    response = client.get("/boom-for-test")
    assert response.status_code == 503
    assert "The service is busy" in response.get_data(as_text=True)


def test_the_rate_limiter_fails_open_when_its_store_is_down(make_app: Callable[..., Flask]) -> None:
    """With the rate limiter's Redis unreachable, is an upload still accepted (counted in memory) rather
    than a 500?"""
    app = make_app(RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0", GRADER_UPLOAD_RATE_LIMIT="2 per minute")
    with app.app_context():
        student = make_world().student
        client = app.test_client()
        answers = [upload(client, "autograd", REFERENCE_SOLUTION.read_bytes(), headers=student.headers).status_code
                   for _ in range(3)]
        assert answers == [202, 202, 429]  # the in-memory fallback still counts


def _post_upload(client: FlaskClient, files: list[tuple[bytes, str]]) -> tuple[int, str]:
    page = client.get("/assignments/autograd/upload").get_data(as_text=True)
    data: dict[str, object] = {"csrf_token": csrf_token(page)}
    if files:
        data["file"] = [(BytesIO(content), name) for content, name in files]
    response = client.post("/assignments/autograd/upload", data=data, content_type="multipart/form-data")
    return response.status_code, response.get_data(as_text=True)


@pytest.mark.parametrize("files", [[], [(b"x = 1\n", "")], [(b"x = 1\n", "solution.py")] * 2],
                         ids=["no-file", "empty-name", "two-files"])
def test_the_web_form_refuses_a_missing_or_doubled_file_with_400(client: FlaskClient, world: World,
                                                                  files: list[tuple[bytes, str]]) -> None:
    """Does the web form answer 400 with the API's message to no file, an empty file name or two files, and
    store nothing?"""
    log_in(client, world.student.email, world.student.password)
    status, page = _post_upload(client, files)
    assert status == 400 and "send exactly one file" in page
    assert db.session.scalar(select(func.count()).select_from(Submission)) == 0


def test_the_web_form_still_accepts_one_file(client: FlaskClient, world: World) -> None:
    """Is a single file uploaded through the form still accepted and shown?"""
    log_in(client, world.student.email, world.student.password)
    status, _ = _post_upload(client, [(REFERENCE_SOLUTION.read_bytes(), "solution.py")])
    assert status == 302
    assert db.session.scalar(select(func.count()).select_from(Submission)) == 1


def test_does_each_kind_of_service_refusal_map_to_its_http_status_in_one_place() -> None:
    """Are statuses decided by grader.http_errors from the error's kind, with the service errors free of HTTP?"""
    from grader import errors
    from grader.http_errors import status_of

    assert status_of(errors.ServiceError("x")) == 400
    assert status_of(errors.NotFound("x")) == 404
    assert status_of(errors.Conflict("x", code="exists")) == 409
    assert status_of(errors.TooLarge("x")) == 413  # nearer than its parent UploadRejected (422)
    assert status_of(errors.UploadRejected("x")) == 422
    assert status_of(errors.Unavailable("x")) == 503
    assert not hasattr(errors.ServiceError("x"), "status")
