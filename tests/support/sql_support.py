"""What the tests ask of the database itself: the statements a piece of code runs."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import event

from grader.extensions import db


@contextmanager
def counted_queries() -> Iterator[list[str]]:
    """The SQL statements run inside the block."""
    statements: list[str] = []

    def note(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", note)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", note)


@contextmanager
def loaded(model: type) -> Iterator[list[Any]]:
    """The instances of `model` that rows become inside the block (what the code read, not just how often)."""
    instances: list[Any] = []

    def note(instance: Any, context: object) -> None:
        instances.append(instance)

    event.listen(model, "load", note)
    try:
        yield instances
    finally:
        event.remove(model, "load", note)


def served(client: FlaskClient, url: str, **kwargs: Any) -> tuple[Any, list[str]]:
    """GET `url` as a server serves it, in an app context and so a database session of its own, and the statements
    it ran. (Inside the test's app context the request would borrow the test's session, with whatever the test
    had loaded in it: a relationship the test had read costs the request nothing, one it had expired a query.)"""
    with counted_queries() as ran:
        response = contextvars.Context().run(client.get, url, **kwargs)
    return response, ran
