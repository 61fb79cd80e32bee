"""GET /healthz: is the database reachable, is the broker reachable."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app
from sqlalchemy import text

from grader.api.openapi import health_operation
from grader.database import db

bp = Blueprint("health", __name__)


def check_database() -> str:
    """ "ok", or the reason the database does not answer."""
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as exc:
        db.session.rollback()
        return f"error: {type(exc).__name__}: {exc}".splitlines()[0]
    return "ok"


def check_broker() -> str:
    """ "ok", or the reason the broker does not answer (one quick try, no retry loop)."""
    celery = current_app.extensions["celery"]
    try:
        with celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=3)
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}".splitlines()[0]
    return "ok"


@bp.get("/healthz")
@health_operation
def healthz() -> tuple[dict[str, Any], int]:
    """200 {"status": "ok", ...} when every dependency answers, else 503 naming the broken one."""
    checks = {"database": check_database(), "broker": check_broker()}
    healthy = all(value == "ok" for value in checks.values())
    return {"status": "ok" if healthy else "error", **checks}, 200 if healthy else 503
