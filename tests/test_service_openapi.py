"""The OpenAPI document describes every API route."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient


def test_openapi_covers_every_route(app: Flask, client: FlaskClient) -> None:
    """Is every /api/v1 route and method (and /healthz) in /api/v1/openapi.json, served without login?"""
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec = response.json
    assert spec["openapi"].startswith("3.")
    documented = {(path, method) for path, item in spec["paths"].items() for method in item}
    for rule in app.url_map.iter_rules():
        if not (rule.rule.startswith("/api/") or rule.rule == "/healthz"):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            assert (path, method.lower()) in documented, f"{method} {path} is not in the OpenAPI document"


def test_openapi_documents_the_error_codes_of_uploads(client: FlaskClient) -> None:
    """Does the upload operation list every refusal it can give?"""
    spec = client.get("/api/v1/openapi.json").json
    responses = spec["paths"]["/api/v1/assignments/{assignment_id}/submissions"]["post"]["responses"]
    assert {"202", "400", "401", "403", "404", "413", "415", "422", "429"} <= set(responses)
