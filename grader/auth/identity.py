"""Resolve the caller from `Authorization: Bearer TOKEN` or the session; issue and hash API tokens."""

from __future__ import annotations

import hashlib
import secrets

from flask import has_request_context, request, session
from sqlalchemy import select

from grader.extensions import db
from grader.models import User

TOKEN_PREFIX = "grd_"  # noqa: S105  (a public marker, not a secret)
_CACHE_KEY = "grader.auth"


def new_token() -> str:
    """A fresh high-entropy API token (shown once; only its hash is stored)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """What is stored for `token`: sha256 suffices for 256-bit random tokens (no dictionary to attack)."""
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(user: User) -> str:
    """Give `user` a new API token, replacing any previous one; returns the token."""
    token = new_token()
    user.api_token_hash = hash_token(token)
    return token


def user_for_token(token: str) -> User | None:
    """The user holding `token`, if any."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    return db.session.scalar(select(User).where(User.api_token_hash == hash_token(token)))


def current_user() -> User | None:
    """The authenticated caller of this request (cached per request), or None."""
    return _resolve()[0]


def auth_method() -> str | None:
    """How this request authenticated: "token", "session" or None."""
    return _resolve()[1]


def _resolve() -> tuple[User | None, str | None]:
    if not has_request_context():
        return None, None
    # Cached in the request's environ, not in `g`: `g` belongs to the app context, which can outlive a request.
    cached = request.environ.get(_CACHE_KEY)
    if cached is None:
        cached = request.environ[_CACHE_KEY] = _authenticate()
    return cached


def _authenticate() -> tuple[User | None, str | None]:
    header = request.headers.get("Authorization", "")
    if header:
        # A request that presents a token is judged by that token alone, never by a cookie riding along.
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None, None
        user = user_for_token(token.strip())
        return user, ("token" if user else None)
    user_id = session.get("user_id")
    if isinstance(user_id, int):
        user = db.session.get(User, user_id)
        if user is not None:
            return user, "session"
    return None, None


def login_user(user: User) -> None:
    """Start a session for `user` (a fresh session, so a planted session id is useless)."""
    session.clear()
    session["user_id"] = user.id
    session.permanent = True
    request.environ[_CACHE_KEY] = (user, "session")


def logout_user() -> None:
    """End the session."""
    session.clear()
    request.environ[_CACHE_KEY] = (None, None)
