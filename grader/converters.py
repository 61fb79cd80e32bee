"""Ids in URLs: an `<int:…>` id in a route, or one in a query string, is bounded by what the database can hold."""

from __future__ import annotations

from typing import Any

from werkzeug.routing import IntegerConverter

from grader.models.types import MAX_ID


class IdConverter(IntegerConverter):
    """`<int:x>` limited to 0..MAX_ID: a larger number does not match the route (404), instead of reaching
    the database driver and overflowing (500)."""

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


def query_id(text: str | None) -> int | None:
    """A database id given in a query string (`?after=12`): ASCII digits from 1 to MAX_ID, else None. (`"²"` is a
    digit to str.isdigit, and int() refuses it.)"""
    if text is None or not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_ID:
        return None
    return int(text)
