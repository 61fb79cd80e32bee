"""Migrations: an empty PostgreSQL and an empty SQLite upgrade to head, and then match the models exactly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

from grader.extensions import db
from tests.conftest import fresh_postgres_database


def differences(app: Flask) -> list[Any]:
    """What Alembic's autogenerate would still change after upgrading to head (nothing, if they match)."""
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, db.metadata))


def assert_no_differences(app: Flask) -> None:
    """Fail with a readable list when the models and the migrations disagree."""
    found = differences(app)
    summary = "\n".join(f"  {d[0][0] if isinstance(d, list) else d[0]}: "
                        f"{(d[0] if isinstance(d, list) else d)[1:]!s:.160}" for d in found)
    assert not found, f"models and migrations differ (add a revision: `grader db migrate -m ...`):\n{summary}"


def check_upgrade_matches_models(app: Flask) -> None:
    """Upgrade an empty database to head, compare it with the models, then go down and up again."""
    with app.app_context():
        assert inspect(db.engine).get_table_names() == []
        upgrade()
        tables = set(inspect(db.engine).get_table_names())
    assert {"user", "course", "enrollment", "assignment", "deliverable", "submission", "grading_run",
            "test_result", "deliverable_score", "alembic_version"} <= tables
    assert_no_differences(app)
    with app.app_context():
        downgrade(revision="base")
        assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
        upgrade()
    assert_no_differences(app)


def test_empty_sqlite_upgrades_to_the_models(make_app: Callable[..., Flask]) -> None:
    """Does an empty SQLite database, upgraded to head, match the models with no difference?"""
    check_upgrade_matches_models(make_app(create_tables=False))


def test_empty_postgresql_upgrades_to_the_models(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    """Does an empty PostgreSQL database, upgraded to head, match the models with no difference?"""
    with fresh_postgres_database() as url:
        app = make_app(create_tables=False, SQLALCHEMY_DATABASE_URI=url)
        try:
            check_upgrade_matches_models(app)
        finally:
            with app.app_context():
                db.session.remove()
                db.engine.dispose()
