"""The JSON API under /api/v1: every caller is authenticated (bearer token or session) unless a view is public."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, current_app, request

from grader.auth.identity import auth_method, current_user
from grader.auth.permissions import require_user
from grader.errors import ServiceError
from grader.extensions import csrf

bp = Blueprint("api", __name__, url_prefix="/api/v1")
# Token callers carry no cookie, so they need no CSRF token; session callers are checked in authenticate().
csrf.exempt(bp)

F = TypeVar("F", bound=Callable[..., object])


def public(view: F) -> F:
    """Mark a view that needs no credentials (the OpenAPI document)."""
    view.public = True  # type: ignore[attr-defined]
    return view


def json_object(what: str, code: str) -> dict[str, Any]:
    """The request's body, which must be a JSON object (else a 400 with error `code` that names `what` to send).
    Spectree passes no body, a form, malformed JSON, `null` and `[]` alike as an empty one, and an empty body means
    something of its own (the manifest's policy again, every submission regraded): none of them may mean it."""
    body = request.get_json(silent=True) if request.is_json else None
    if not isinstance(body, dict):
        raise ServiceError(f"send {what} as a JSON object, with Content-Type: application/json", code=code)
    return body


@bp.before_request
def authenticate() -> None:
    """Refuse anonymous callers (401), and require a CSRF token from session callers that change things."""
    view = current_app.view_functions.get(request.endpoint or "")
    if getattr(view, "public", False):
        return
    require_user(current_user())
    if auth_method() == "session" and request.method not in ("GET", "HEAD", "OPTIONS"):
        # A browser sends the session cookie with a forged cross-site form too; the token proves intent.
        csrf.protect()


from grader.api import assignments, openapi, policy, regrades, submissions  # noqa: E402  (routes register on bp)

__all__ = ["assignments", "bp", "json_object", "openapi", "policy", "public", "regrades", "submissions"]
