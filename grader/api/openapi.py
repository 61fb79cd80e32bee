"""The OpenAPI 3.1 description of the API, served at /api/v1/openapi.json (a test checks it covers every route)."""

from __future__ import annotations

from typing import Any

from grader.api import bp, public
from grader.models.types import MAX_ID

_ERROR = {"$ref": "#/components/responses/Error"}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _ERROR for code in codes}


def _ok(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"description": description}
    if schema is not None:
        body["content"] = {"application/json": {"schema": schema}}
    return body


_ASSIGNMENT_ID = {"name": "assignment_id", "in": "path", "required": True, "schema": {"type": "string"},
                  "description": "The assignment pack's id, e.g. `autograd`"}
_NUMBER = {"type": "number"}
_NULLABLE_NUMBER = {"type": ["number", "null"]}

_DELIVERABLE_RESULT = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "title": {"type": "string"},
        "score": _NUMBER,
        "max_score": _NUMBER,
        "tests": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "status": {"type": "string", "description": "passed, failed, error, timeout, memory, "
                               "crashed; `hidden` when the student may not see it yet"},
                    "score": _NUMBER,
                    "max_score": _NUMBER,
                    "visibility": {"type": "string", "enum": ["visible", "hidden", "after_due_date"]},
                    "output": {"type": "string"},
                },
            },
        },
    },
}

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "grader API",
        "version": "1",
        "description": "Upload submissions, follow their grading, read scores. Authenticate with "
        "`Authorization: Bearer TOKEN` (from `grader demo` or `grader user token`) or a logged-in session "
        "(which must also send `X-CSRFToken` on POST). Errors are `{\"error\": code, \"detail\": reason}`.",
    },
    "servers": [{"url": "/"}],
    "security": [{"bearer": []}, {"session": []}],
    "paths": {
        "/healthz": {
            "get": {
                "summary": "Liveness and dependencies (database, broker)",
                "security": [],
                "responses": {"200": _ok("All dependencies answer", {"$ref": "#/components/schemas/Health"}),
                              "503": _ok("A dependency is down", {"$ref": "#/components/schemas/Health"})},
            }
        },
        "/api/v1/openapi.json": {
            "get": {"summary": "This document", "security": [], "responses": {"200": _ok("OpenAPI 3.1")}}
        },
        "/api/v1/me": {
            "get": {"summary": "The caller and their courses", "responses": {"200": _ok("The caller"),
                                                                              **_errors(401)}}
        },
        "/api/v1/assignments": {
            "get": {"summary": "Assignments of the caller's courses",
                    "responses": {"200": _ok("Assignments"), **_errors(401)}}
        },
        "/api/v1/assignments/{assignment_id}": {
            "get": {
                "summary": "What an upload must look like (file names, size limit) and what is scored",
                "parameters": [_ASSIGNMENT_ID],
                "responses": {"200": _ok("The assignment"), **_errors(401, 403, 404)},
            }
        },
        "/api/v1/assignments/{assignment_id}/submissions": {
            "post": {
                "summary": "Upload a file for grading",
                "parameters": [_ASSIGNMENT_ID],
                "requestBody": {
                    "required": True,
                    "content": {"multipart/form-data": {"schema": {
                        "type": "object", "required": ["file"],
                        "properties": {"file": {"type": "string", "format": "binary",
                                                "description": "One UTF-8 file named as the assignment "
                                                "expects (e.g. solution.py), at most max_upload_bytes"}},
                    }}},
                },
                "responses": {
                    "202": _ok("Stored and queued; poll `url`", {"$ref": "#/components/schemas/Queued"}),
                    **_errors(400, 401, 403, 404, 413, 415, 422, 429, 503),
                },
            },
            "get": {
                "summary": "The caller's submissions (instructors: everyone's; `?email=` filters)",
                "parameters": [_ASSIGNMENT_ID,
                               {"name": "email", "in": "query", "required": False, "schema": {"type": "string"}}],
                "responses": {"200": _ok("Submissions, newest first"), **_errors(401, 403, 404)},
            },
        },
        "/api/v1/submissions/{submission_id}": {
            "get": {
                "summary": "A submission's status and, once graded, its result",
                "parameters": [{"name": "submission_id", "in": "path", "required": True,
                                "schema": {"type": "integer", "minimum": 0, "maximum": MAX_ID}}],
                "responses": {
                    "200": _ok("The submission", {"$ref": "#/components/schemas/Submission"}),
                    **_errors(401, 403, 404),
                },
            }
        },
        "/api/v1/assignments/{assignment_id}/scores": {
            "get": {
                "summary": "Gradebook: per student, per deliverable scores (instructors of the course)",
                "parameters": [_ASSIGNMENT_ID,
                               {"name": "policy", "in": "query", "required": False,
                                "schema": {"type": "string", "enum": ["latest", "best"]},
                                "description": "Which submission counts (default: the assignment's policy)"}],
                "responses": {"200": _ok("Scores", {"$ref": "#/components/schemas/Scores"}),
                              **_errors(400, 401, 403, 404)},
            }
        },
    },
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "session": {"type": "apiKey", "in": "cookie", "name": "session"},
        },
        "responses": {
            "Error": {
                "description": "A refusal: 400 bad request, 401 no or bad credentials, 403 not allowed, 404 not "
                "found (also another student's submission), 413 file too large, 415 not multipart, 422 wrong "
                "file name / empty / not UTF-8 text, 429 too many uploads, 503 queue unavailable",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
        },
        "schemas": {
            "Error": {"type": "object", "required": ["error", "detail"],
                      "properties": {"error": {"type": "string"}, "detail": {}}},
            "Health": {"type": "object", "properties": {"status": {"type": "string", "enum": ["ok", "error"]},
                                                        "database": {"type": "string"},
                                                        "broker": {"type": "string"}}},
            "Queued": {"type": "object", "required": ["id", "status", "url"],
                       "properties": {"id": {"type": "integer"}, "status": {"const": "queued"},
                                      "url": {"type": "string"}, "queue_position": {"type": "integer"}}},
            "Submission": {
                "type": "object",
                "required": ["id", "status", "url", "assignment"],
                "properties": {
                    "id": {"type": "integer"},
                    "url": {"type": "string"},
                    "assignment": {"type": "string"},
                    "status": {"type": "string", "enum": ["queued", "running", "graded", "error"]},
                    "queue_position": {"type": "integer", "description": "While queued: 1 means next"},
                    "submitted_at": {"type": "string", "format": "date-time"},
                    "file": {"type": "object"},
                    "user": {"type": "object"},
                    "grading": {"type": "object", "description": "Run number, attempt, runner, image, timings"},
                    "score": _NUMBER,
                    "max_score": _NUMBER,
                    "message": {"type": "string"},
                    "execution_time": _NUMBER,
                    "deliverables": {"type": "array", "items": _DELIVERABLE_RESULT},
                },
            },
            "Scores": {
                "type": "object",
                "properties": {
                    "assignment": {"type": "string"},
                    "course": {"type": "string"},
                    "version": {"type": "integer"},
                    "policy": {"type": "string", "enum": ["latest", "best"]},
                    "max_score": _NUMBER,
                    "deliverables": {"type": "array", "items": {"type": "object"}},
                    "students": {"type": "array", "items": {
                        "type": "object",
                        "properties": {
                            "email": {"type": "string"},
                            "external_id": {"type": ["string", "null"]},
                            "name": {"type": "string"},
                            "submissions": {"type": "integer"},
                            "submission_id": {"type": ["integer", "null"]},
                            "submitted_at": {"type": ["string", "null"]},
                            "score": _NULLABLE_NUMBER,
                            "max_score": _NUMBER,
                            "deliverables": {"type": "object", "additionalProperties": _NULLABLE_NUMBER},
                        },
                    }},
                },
            },
        },
    },
}


@bp.get("/openapi.json")
@public
def openapi() -> dict[str, Any]:
    """The OpenAPI document."""
    return SPEC
