"""Flask extensions, created unbound here and bound to an app by `create_app` (one instance per process).

The database handle lives in grader/database.py (the models must not import the web's extensions); it is
re-exported here so that the app factory wires every extension from one place.
"""

from __future__ import annotations

from flask import Flask, request
from flask_limiter import Limiter
from flask_migrate import Migrate
from flask_wtf import CSRFProtect

from grader.database import Base, db


def rate_limit_key() -> str:
    """Rate-limit bucket: the authenticated user, else the client address (resolving the caller lazily)."""
    from grader.auth.identity import current_user

    user = current_user()
    return f"user:{user.id}" if user is not None else f"addr:{request.remote_addr}"


class AppLimiter(Limiter):
    """flask-limiter's Limiter, whose `init_app` starts the app it binds on that app's own store.

    The limiter is one object per process, and so is its "store is down" state, but a process may build
    several apps (the tests do). An app built after another found its store unreachable counted in the
    in-memory fallback until a backoff check found its own store alive, then switched stores mid-stream:
    the login guesses counted before the switch were forgotten, and one past the limit went through."""

    def init_app(self, app: Flask) -> None:
        super().init_app(app)
        # The store and the fallback are new (init_app makes both); the flag saying the store is down is not.
        # flask-limiter 4.1 keeps it in a private attribute (pinned; test_service_login.py fails if it moves).
        self._storage_dead = False


migrate = Migrate()
csrf = CSRFProtect()
limiter = AppLimiter(key_func=rate_limit_key)

__all__ = ["Base", "csrf", "db", "limiter", "migrate"]
