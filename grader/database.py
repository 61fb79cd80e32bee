"""The database handle: the declarative base with named constraints, and the one `SQLAlchemy` instance.

Apart from the web's extensions (grader/extensions.py) so that the models, the services and the worker need
nothing of the web layer to reach the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

# Named constraints: Alembic can then drop and alter them by name, on SQLite (batch mode) as on PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every model."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)


@contextmanager
def loaded_once() -> Iterator[None]:
    """Within the block, a commit keeps what the session loaded instead of expiring it.

    For a unit of work that commits more than once and then reads the rows it wrote or loaded: by default each
    commit made the next attribute read load the row again (a grading task commits three times and read its run,
    submission, assignment and deliverables again after each: 28 statements where 15 do; an upload 20 where
    14 do). Use it only where nothing another process may change in between is read from memory afterwards:
    each user says why that holds for it. A request's or a task's session is its own, so nothing kept is older
    than the request or task itself. On leaving the outermost block everything loaded is expired, as a commit
    would have done: a session that outlives the block (an eager task's caller, a test's app context serving
    several requests) never reads a row from before it again.
    """
    session = db.session()
    previous = session.expire_on_commit
    session.expire_on_commit = False
    try:
        yield
    finally:
        session.expire_on_commit = previous
        if previous:
            session.expire_all()


__all__ = ["NAMING_CONVENTION", "Base", "db", "loaded_once"]
