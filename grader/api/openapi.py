"""The OpenAPI 3.1 document, generated from the code and served at /api/v1/openapi.json.

spectree reads each view's declaration (`operation(...)`: its pydantic models, tag, operationId and the
statuses it can answer) and Flask's URL map; `document()` adds what spectree cannot know (security, the
multipart upload body, the 202's `Location` header, id bounds, the LMS webhook's signature headers). Query
strings are validated against their models; a refusal is our `{"error", "detail"}` body, never spectree's.

Errors stay `{"error": code, "detail": reason}` (not RFC 9457 problem+json): integrations already parse it,
and it carries the same facts (a stable code, a human reason; the HTTP status is the response's).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel
from spectree import Response, SpecTree

from grader.api import bp, public
from grader.api.schemas import Error, Health, InboundQueued, InboundSubmission
from grader.errors import ServiceError
from grader.models.types import MAX_ID  # the id converters enforce the same bound
from grader.services.submissions import KEY_CHARACTER, KEY_MAX_LENGTH  # what upload_key() accepts

# The largest id a path may carry (a signed 64-bit integer, as stored); the URL converter enforces it.

ERROR_MEANINGS = {
    400: "Bad request: an invalid query string, a missing CSRF token (session callers), a malformed body",
    401: "No or bad credentials (or a bad webhook signature)",
    403: "Authenticated, but not allowed",
    404: "Not found (also another student's submission)",
    409: "Not now, in this state: the same webhook-id is being processed; a regrade is still grading, already "
         "decided, or cannot load the assignment's tests",
    413: "The file or body is larger than the limit",
    415: "Not multipart/form-data",
    422: "The upload cannot be graded as sent (file name, empty, not UTF-8 text) or the message is invalid",
    429: "Too many requests: see the Retry-After header",
    503: "The grading queue is unavailable; nothing was stored",
}


def refuse_invalid(code: str = "invalid_request") -> Callable[..., None]:
    """A spectree `before` hook: a validation failure becomes our 400 error body, with `code`."""

    def hook(_req: Any, _resp: Any, error: Exception | None, _instance: Any, _adapter: Any) -> None:
        if error is not None:
            errors = error.errors()  # type: ignore[attr-defined]
            problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors]
            raise ServiceError("; ".join(problems), code=code)

    return hook


spec = SpecTree(
    "flask",
    mode="strict",
    annotations=False,
    title="grader API",
    version="1",
    openapi_version="3.1.0",
    naming_strategy=lambda model: model.__name__,
    nested_naming_strategy=lambda _parent, child: child,
    validation_error_status=400,
    validation_error_model=Error,
    before=refuse_invalid(),
)


def operation(tag: str, operation_id: str, ok: dict[int, type[BaseModel] | None], errors: Iterable[int] = (),
              query: type[BaseModel] | None = None, skip_validation: bool = False,
              invalid_code: str = "invalid_request", body: type[BaseModel] | None = None) -> Callable[[Any], Any]:
    """Declare a view's operation: its tag, operationId, success bodies, refusals, query and JSON body models.

    An invalid query string or body is a 400 with error `invalid_code`.
    """
    statuses: dict[str, Any] = {f"HTTP_{code}": model for code, model in ok.items()}
    statuses.update({f"HTTP_{code}": (Error, ERROR_MEANINGS[code]) for code in errors})
    return spec.validate(query=query, json=body, resp=Response(**statuses), tags=[tag], operation_id=operation_id,
                         skip_validation=skip_validation, before=refuse_invalid(invalid_code))


def _bound_ids(operation_doc: dict[str, Any]) -> None:
    for parameter in operation_doc.get("parameters", []):
        schema = parameter.get("schema", {})
        if parameter.get("in") == "path" and schema.get("type") == "integer":
            parameter["schema"] = {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_ID}
        elif parameter.get("in") == "path" and schema.get("type") == "string":
            # A segment: Flask's default converter takes anything but a slash.
            parameter["schema"] = {"type": "string", "pattern": "^[^/]+$"}


UPLOAD_BODY = {
    "required": True,
    "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary",
                                "description": "One UTF-8 file named as the assignment expects (e.g. "
                                "solution.py), at most the assignment's max_upload_bytes"}},
    }}},
}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": KEY_MAX_LENGTH, "pattern": f"^{KEY_CHARACTER}+$"},
    "description": "A key of the client's choosing, new for each new upload (a UUID, say): the same upload sent again "
                   "with it (its answer was lost) gets the submission it made, counted once; sent with another "
                   "upload it is refused (422 `idempotency_key_reused`)",
}
LOCATION = {"Location": {"description": "The submission's URL (poll it)", "required": True,
                         "schema": {"type": "string"}}}
REGRADE_LOCATION = {"Location": {"description": "The regrade's URL (poll its progress and preview)", "required": True,
                                 "schema": {"type": "string"}}}
WEBHOOK_HEADERS = [
    {"name": name, "in": "header", "required": True, "schema": {"type": "string"}, "description": text}
    for name, text in (
        ("webhook-id", "Unique per message; the same id again gets the same answer"),
        ("webhook-timestamp", "Unix seconds, at most 5 minutes off"),
        ("webhook-signature", "`v1,` + base64 HMAC-SHA256 of `id.timestamp.body` with the inbound secret"),
    )
]


def document() -> dict[str, Any]:
    """The full OpenAPI document for the current app."""
    doc = copy.deepcopy(spec.spec)
    doc["info"]["description"] = (
        "Upload submissions, follow their grading, read scores. Authenticate with `Authorization: Bearer TOKEN` "
        "(from `grader demo` or `grader user token`) or a logged-in session (which must also send `X-CSRFToken` "
        "on POST). Errors are `{\"error\": code, \"detail\": reason}` with the HTTP status."
    )
    doc["servers"] = [{"url": "/"}]
    doc["security"] = [{"bearer": []}, {"session": []}]
    components = doc.setdefault("components", {})
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer"},
        "session": {"type": "apiKey", "in": "cookie", "name": "session"},
    }
    for path, item in doc["paths"].items():
        for method, op in item.items():
            _bound_ids(op)
            for response in op.get("responses", {}).values():
                response.setdefault("description", "")
            if "security" in op and not op["security"]:
                op.pop("security")
            if path in PUBLIC_PATHS:
                op["security"] = []
            if (path, method) == ("/api/v1/assignments/{assignment_id}/submissions", "post"):
                op["requestBody"] = copy.deepcopy(UPLOAD_BODY)
                op["parameters"] = [*op.get("parameters", []), copy.deepcopy(IDEMPOTENCY_KEY)]
                op["responses"]["202"]["headers"] = copy.deepcopy(LOCATION)
            if (path, method) == ("/api/v1/assignments/{assignment_id}/regrades", "post"):
                op["responses"]["202"]["headers"] = copy.deepcopy(REGRADE_LOCATION)
            if (path, method) == ("/api/v1/lms/{name}/submissions", "post"):
                op["parameters"] = [*op.get("parameters", []), *copy.deepcopy(WEBHOOK_HEADERS)]
                op["requestBody"] = {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/InboundSubmission"}}}}
    schemas = components.setdefault("schemas", {})
    inbound = InboundSubmission.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(inbound.pop("$defs", {}))
    schemas["InboundSubmission"] = inbound
    return doc


PUBLIC_PATHS = ("/healthz", "/api/v1/openapi.json", "/api/v1/lms/{name}/submissions")

# Operations whose views live elsewhere, declared here so every route has one place to look.
health_operation = operation("health", "getHealth", {200: Health, 503: Health}, skip_validation=True)
inbound_operation = operation("lms", "receiveLmsSubmission", {202: InboundQueued},
                              (400, 401, 404, 409, 413, 422, 503), skip_validation=True)


@bp.get("/openapi.json")
@public
@operation("meta", "getOpenApiDocument", {200: None})
def openapi() -> dict[str, Any]:
    """The OpenAPI document."""
    return document()
