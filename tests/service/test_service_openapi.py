"""The OpenAPI document: generated from the code, valid, complete, and what the API really answers.

schemathesis fuzzes every operation through the WSGI app (no network) with all its checks, and the upload
operation is exercised with real files; openapi-spec-validator validates the document itself.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate

from tests.conftest import REFERENCE_SOLUTION, STARTER_SOLUTION, World, make_world

UPLOAD = "/api/v1/assignments/{assignment_id}/submissions"


def test_openapi_covers_every_route(app: Flask, client: FlaskClient) -> None:
    """Is every /api/v1 route and method (and /healthz) in /api/v1/openapi.json, served without login?"""
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec = response.json
    assert spec["openapi"] == "3.1.0"
    documented = {(path, method) for path, item in spec["paths"].items() for method in item}
    for rule in app.url_map.iter_rules():
        if not (rule.rule.startswith("/api/") or rule.rule == "/healthz"):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            assert (path, method.lower()) in documented, f"{method} {path} is not in the OpenAPI document"


def test_the_document_is_valid_openapi(client: FlaskClient) -> None:
    """Does openapi-spec-validator accept the generated document?"""
    validate(client.get("/api/v1/openapi.json").json)


def test_every_operation_has_an_id_a_tag_and_typed_responses(client: FlaskClient) -> None:
    """Has every operation a unique operationId, a tag, and a schema for every JSON response it can give?"""
    spec = client.get("/api/v1/openapi.json").json
    ids = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            ids.append(op["operationId"])
            assert op["tags"], f"{method} {path} has no tag"
            for status, response in op["responses"].items():
                if path == "/api/v1/openapi.json":
                    continue
                schema = response["content"]["application/json"]["schema"]
                assert "$ref" in schema, f"{method} {path} {status} has no schema"
                if status.startswith(("4", "5")) and path != "/healthz":
                    assert schema["$ref"] == "#/components/schemas/Error"
    assert len(ids) == len(set(ids))


def test_the_upload_operation_documents_refusals_and_location(client: FlaskClient) -> None:
    """Does the upload list every refusal it can give, the 202's Location header and the optional
    Idempotency-Key?"""
    spec = client.get("/api/v1/openapi.json").json
    responses = spec["paths"][UPLOAD]["post"]["responses"]
    assert {"202", "400", "401", "403", "404", "413", "415", "422", "429", "503"} <= set(responses)
    assert responses["202"]["headers"]["Location"]["required"] is True
    body = spec["paths"][UPLOAD]["post"]["requestBody"]["content"]
    assert body["multipart/form-data"]["schema"]["required"] == ["file"]
    (key,) = [p for p in spec["paths"][UPLOAD]["post"]["parameters"] if p["in"] == "header"]
    assert key["name"] == "Idempotency-Key" and key["required"] is False


def test_ids_in_paths_are_bounded(client: FlaskClient) -> None:
    """Are integer ids in paths declared as 1..2^63-1 (what the database can hold)?"""
    spec = client.get("/api/v1/openapi.json").json
    (parameter,) = spec["paths"]["/api/v1/submissions/{submission_id}"]["get"]["parameters"]
    assert parameter["schema"] == {"type": "integer", "format": "int64", "minimum": 1,
                                   "maximum": 9223372036854775807}


def test_the_lms_webhook_body_is_declared_and_validated(client: FlaskClient) -> None:
    """Is the LMS webhook's body the InboundSubmission model, with its signature headers required?"""
    spec = client.get("/api/v1/openapi.json").json
    op = spec["paths"]["/api/v1/lms/{name}/submissions"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/InboundSubmission"}
    assert {p["name"] for p in op["parameters"] if p["in"] == "header"} == {
        "webhook-id", "webhook-timestamp", "webhook-signature"}
    assert op["security"] == []
    assert set(spec["components"]["schemas"]["InboundSubmission"]["required"]) == {"user", "assignment", "files"}


# --- schemathesis -------------------------------------------------------------------------------------------
@pytest.fixture
def service(make_app: Callable[..., Flask]) -> tuple[Flask, World]:
    """An app with the usual cast, and no app context left pushed (each request gets its own, as in production)."""
    app = make_app()
    with app.app_context():
        world = make_world()
    return app, world


def generated_document() -> dict[str, Any]:
    """The document as an app serves it (built once, at collection, in a throwaway home; no database needed)."""
    from tests.conftest import isolated_app, service_config

    with tempfile.TemporaryDirectory() as home:
        app = isolated_app(service_config(Path(home)))
        return app.test_client().get("/api/v1/openapi.json").json


# schemathesis' lazy fixture loader does not work with pytest 9 (it sets Function._nodeid), so the schema is
# loaded from the generated document at collection and each test points it at its own app (WSGI, no network).
api = schemathesis.openapi.from_dict(generated_document())


def point_at(schema: Any, app: Flask) -> Any:
    """Make `schema` call `app` through WSGI, as `schemathesis.openapi.from_wsgi` would."""
    schema.app, schema.location = app, "/api/v1/openapi.json"
    return schema


@pytest.fixture
def api_schema(service: tuple[Flask, World]) -> Any:
    """The schema, calling this test's app."""
    return point_at(api, service[0])


@api.parametrize()
@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much, HealthCheck.data_too_large])
def test_the_api_answers_what_its_document_says(case: Any, service: tuple[Flask, World]) -> None:
    """Does every operation, fuzzed with valid and invalid inputs, answer only what the document declares?"""
    point_at(case.operation.schema, service[0])
    case.call_and_validate(headers=service[1].instructor.headers, app=service[0])


@pytest.mark.parametrize(("name", "content", "status"), [
    ("solution.py", REFERENCE_SOLUTION.read_bytes(), 202),
    ("solution.py", STARTER_SOLUTION.read_bytes(), 202),
    ("notes.txt", b"not the file the assignment wants\n", 422),
    ("solution.py", b"\xff\xfe not utf-8", 422),
])
def test_uploading_real_files_matches_the_document(api_schema: Any, service: tuple[Flask, World], name: str,
                                                   content: bytes, status: int) -> None:
    """Do real uploads (accepted and refused) answer with the status, headers and body the document declares?"""
    operation = api_schema[UPLOAD]["POST"]
    case = operation.Case(path_parameters={"assignment_id": "autograd"}, media_type="multipart/form-data",
                          body={"file": content})
    headers = service[1].student.headers
    response = service[0].test_client().post(
        "/api/v1/assignments/autograd/submissions", headers=headers,
        data={"file": (__import__("io").BytesIO(content), name)}, content_type="multipart/form-data")
    assert response.status_code == status, response.json
    case.validate_response(response, headers=headers)
    if status == 202:
        assert response.headers["Location"] == response.json["url"]


def test_an_upload_a_worker_starts_before_its_answer_still_gets_its_202(
        api_schema: Any, service: tuple[Flask, World], monkeypatch: pytest.MonkeyPatch) -> None:
    """When a worker claims the submission between its commit and the 202 being written (a burst on an idle
    worker does this), does the upload still get a 202 that says where it is now and matches the document?"""
    from grader.api import submissions as api_submissions
    from grader.services.grading import claim, find_run

    accept = api_submissions.submit

    def accept_then_claim(*args: Any, **kwargs: Any) -> Any:
        submission = accept(*args, **kwargs)
        run = find_run(submission.id)
        assert run is not None and claim(run, "a faster worker")  # what a worker's first step does
        return submission

    monkeypatch.setattr(api_submissions, "submit", accept_then_claim)
    headers = service[1].student.headers
    response = service[0].test_client().post(
        "/api/v1/assignments/autograd/submissions", headers=headers,
        data={"file": (__import__("io").BytesIO(REFERENCE_SOLUTION.read_bytes()), "solution.py")},
        content_type="multipart/form-data")
    assert response.status_code == 202, response.json
    assert response.json["status"] == "running"
    operation = api_schema[UPLOAD]["POST"]
    operation.Case(path_parameters={"assignment_id": "autograd"}, media_type="multipart/form-data",
                   body={"file": b""}).validate_response(response, headers=headers)
