"""The instructor's pages, the dashboard (`/instructor/...`): overviews, histograms, the gradebook table and CSV,
submission detail, regrades with a before → after preview, and a small JSON endpoint that keeps open pages current.

Server-rendered pages; the JavaScript in grader/static/ only enhances them (live refresh, instant sort and
search). Every page is for instructors of the course in question (admins everywhere).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Blueprint, redirect, request, url_for

from grader.auth.identity import current_user
from grader.auth.permissions import teaches_anything
from grader.errors import Forbidden, Unauthorized

# The blueprint keeps its old name "dashboard": every url_for("dashboard.<view>") in templates, redirects and
# tests stays valid without a rename of every endpoint alongside the package.
bp = Blueprint("dashboard", __name__, url_prefix="/instructor")

F = TypeVar("F", bound=Callable[..., Any])


def instructor_required(view: F) -> F:
    """Anonymous visitors go to the login page (JSON callers get 401); non-instructors get 403."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        """Check the caller, then run the view."""
        user = current_user()
        if user is None:
            if request.path.endswith(".json"):
                raise Unauthorized("log in to see this")
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        if not teaches_anything(user):
            raise Forbidden("the instructor dashboard is for instructors; your pages are on the home page")
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


from grader.instructor import actions, pages, policy_pages  # noqa: E402  (routes register on bp)

__all__ = ["actions", "bp", "instructor_required", "pages", "policy_pages"]
