"""Flask extensions, created unbound here and bound to an app by `create_app` (one instance per process).

The database handle lives in grader/database.py (the models must not import the web's extensions); it is
re-exported here so that the app factory wires every extension from one place.
"""

from __future__ import annotations

from flask import request
from flask_limiter import Limiter
from flask_migrate import Migrate
from flask_wtf import CSRFProtect

from grader.database import Base, db


def rate_limit_key() -> str:
    """Rate-limit bucket: the authenticated user, else the client address (resolving the caller lazily)."""
    from grader.auth.identity import current_user

    user = current_user()
    return f"user:{user.id}" if user is not None else f"addr:{request.remote_addr}"


migrate = Migrate()
csrf = CSRFProtect()
limiter = Limiter(key_func=rate_limit_key)

__all__ = ["Base", "csrf", "db", "limiter", "migrate"]
