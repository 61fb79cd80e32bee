"""OpenAPI description of the LMS route under /api/v1 (merged into the service's document by `init_app`)."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/responses/Error"}

PATHS: dict[str, Any] = {
    "/api/v1/lms/{name}/submissions": {
        "post": {
            "summary": "An LMS sends a student's submission (Standard Webhooks signature, no bearer token)",
            "description": "Signed with the integration's inbound secret: headers `webhook-id`, "
            "`webhook-timestamp` (at most 5 minutes off) and `webhook-signature` (`v1,` + base64 "
            "HMAC-SHA256 of `id.timestamp.body`). "
            "The same `webhook-id` again gets the same answer and creates nothing. The student is created or "
            "matched by `external_id` and enrolled in the integration's course.",
            "security": [],
            "parameters": [
                {
                    "name": "name",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": "The integration's name (`grader lms add NAME`)",
                },
                {"name": "webhook-id", "in": "header", "required": True, "schema": {"type": "string"}},
                {"name": "webhook-timestamp", "in": "header", "required": True, "schema": {"type": "string"}},
                {"name": "webhook-signature", "in": "header", "required": True, "schema": {"type": "string"}},
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["user", "assignment", "files"],
                            "properties": {
                                "user": {
                                    "type": "object",
                                    "required": ["external_id", "email"],
                                    "properties": {
                                        "external_id": {"type": "string"},
                                        "email": {"type": "string"},
                                        "name": {"type": "string"},
                                    },
                                },
                                "assignment": {"type": "string", "description": "e.g. `autograd`"},
                                "files": {
                                    "type": "object",
                                    "additionalProperties": {"type": "string", "contentEncoding": "base64"},
                                    "description": 'Exactly one file, e.g. `{"solution.py": "<base64>"}`',
                                },
                            },
                        }
                    }
                },
            },
            "responses": {
                "202": {
                    "description": "Queued",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["id", "status"],
                                "properties": {"id": {"type": "integer"}, "status": {"const": "queued"}},
                            }
                        }
                    },
                },
                **{str(code): _ERROR for code in (400, 401, 404, 409, 413, 422, 503)},
            },
        }
    }
}
