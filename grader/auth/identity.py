"""Resolve the caller from `Authorization: Bearer TOKEN` or the session; issue and hash API tokens.

A session is valid while it is younger than GRADER_SESSION_IDLE_SECONDS since its last request, and while the
user's credentials are the ones it was started with: changing the password, or issuing or revoking the API
token, ends every existing session of that user (its stored fingerprint no longer matches).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from flask import current_app, has_request_context, request, session
from sqlalchemy import select

from grader.database import db
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
    """Give `user` a new API token, replacing any previous one (and ending their sessions); returns the token."""
    token = new_token()
    user.api_token_hash = hash_token(token)
    return token


def revoke_token(user: User) -> None:
    """Remove `user`'s API token (and end their sessions, which may have been opened by the same person)."""
    user.api_token_hash = None


def credentials_fingerprint(user: User) -> str:
    """A keyed digest of `user`'s password hash and token hash: it changes whenever either does."""
    material = f"{user.id}:{user.password_hash or ''}:{user.api_token_hash or ''}".encode()
    key = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(key, material, hashlib.sha256).hexdigest()[:32]


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
    if not isinstance(user_id, int):
        return None, None
    user = db.session.get(User, user_id)
    now = int(time.time())
    last_seen = session.get("seen")
    idle_limit = int(current_app.config["GRADER_SESSION_IDLE_SECONDS"])
    fresh = isinstance(last_seen, int) and 0 <= now - last_seen <= idle_limit
    if user is None or not fresh or not hmac.compare_digest(str(session.get("auth", "")),
                                                            credentials_fingerprint(user)):
        session.clear()
        return None, None
    if now - last_seen >= _SEEN_RESOLUTION:
        session["seen"] = now  # rewritten at most once a minute, not on every request
    return user, "session"


# Seconds between refreshes of a session's last-seen time (the idle limit is this precise).
_SEEN_RESOLUTION = 60


def session_values(user: User) -> dict[str, int | str]:
    """What a new session of `user` holds: who, the credentials' fingerprint, and when it was last used."""
    return {"user_id": user.id, "auth": credentials_fingerprint(user), "seen": int(time.time())}


def login_user(user: User) -> None:
    """Start a session for `user` (a fresh session, so a planted session id is useless)."""
    session.clear()
    session.update(session_values(user))
    session.permanent = True
    request.environ[_CACHE_KEY] = (user, "session")


def logout_user() -> None:
    """End the session."""
    session.clear()
    request.environ[_CACHE_KEY] = (None, None)
