"""URL converters: an `<int:…>` id in a route is bounded by what the database can hold."""

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
