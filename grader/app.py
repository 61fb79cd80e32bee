"""The application factory: configuration, extensions, blueprints, error handlers — wired, nothing more."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine

from grader.config import ensure_secret_key, finalize, load_config
from grader.extensions import csrf, db, limiter, migrate

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app from the environment, with `test_config` overriding any setting."""
    config = load_config()
    config.update(test_config or {})
    finalize(config)
    home = Path(config["GRADER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    ensure_secret_key(config)
    Path(config["SUBMISSIONS_DIR"]).mkdir(parents=True, exist_ok=True)
    _prepare_broker_folders(config["CELERY"])

    app = Flask("grader", instance_path=str(home))
    app.config.update(config)
    from grader import logs

    logs.init_app(app)

    import grader.models  # noqa: F401  (register the tables before anything reflects on them)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR), render_as_batch=True, compare_type=True)
    csrf.init_app(app)
    limiter.init_app(app)

    from grader.celery_app import celery_init_app
    from grader.converters import IdConverter

    celery_init_app(app)
    app.url_map.converters["int"] = IdConverter  # before any route is added: every `<int:id>` is bounded
    _register_blueprints(app)

    from grader import http_errors, templating

    http_errors.register(app)
    templating.init_app(app)  # filters and globals every page uses, whichever blueprint renders it
    from grader.cli import register_commands

    # `flask --app grader user list` works as Flask users expect, beside `grader user list`.
    register_commands(app.cli)
    return app


def _register_blueprints(app: Flask) -> None:
    from grader import health, lms
    from grader.api import bp as api_bp
    from grader.auth.views import bp as auth_bp
    from grader.instructor import bp as instructor_bp
    from grader.student import bp as student_bp

    app.register_blueprint(health.bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(auth_bp)
    app.register_blueprint(student_bp)
    app.register_blueprint(instructor_bp)
    lms.init_app(app)  # LMS webhooks and LTI: blueprints, settings, signal subscriptions


def _prepare_broker_folders(celery_config: dict[str, Any]) -> None:
    """kombu's filesystem transport expects its folders to exist."""
    options = celery_config.get("broker_transport_options", {})
    for key in ("data_folder_in", "data_folder_out", "control_folder"):
        if key in options:
            Path(options[key]).mkdir(parents=True, exist_ok=True)


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """SQLite: enforce foreign keys, and let the web process and the worker write at the same time (WAL)."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()
