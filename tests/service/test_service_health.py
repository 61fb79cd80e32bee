"""GET /healthz reports the database and the broker."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient


def test_healthy_embedded_service(client: FlaskClient) -> None:
    """On embedded defaults (SQLite, filesystem broker), is /healthz 200 with every check ok, without login?"""
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": "ok", "broker": "ok"}


def test_broker_down_is_503(make_app: Callable[..., Flask]) -> None:
    """With the broker unreachable, does /healthz answer 503 and name the broker?"""
    app = make_app(BROKER_URL="redis://127.0.0.1:1/0")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json["status"] == "error" and response.json["database"] == "ok"
    assert response.json["broker"].startswith("error:")


def test_database_down_is_503(make_app: Callable[..., Flask]) -> None:
    """With the database unreachable, does /healthz answer 503 and name the database?"""
    app = make_app(create_tables=False, SQLALCHEMY_DATABASE_URI="postgresql+psycopg://nobody@127.0.0.1:1/none")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json["database"].startswith("error:") and response.json["broker"] == "ok"
