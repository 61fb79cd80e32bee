"""Login done right: are password guesses limited, and does a session end when it should?"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from grader.auth import identity
from grader.auth.identity import issue_token, revoke_token
from grader.extensions import db, limiter
from tests.conftest import World, make_world
from tests.service.test_service_pages import log_in


def logged_in(client: FlaskClient) -> bool:
    """Whether the client's session still authenticates (the API's /me answers)."""
    return client.get("/api/v1/me").status_code == 200


def test_login_attempts_are_rate_limited(make_app: Callable[..., Flask]) -> None:
    """After the limit of login POSTs from one address, is the next refused with 429, even with the right password?"""
    app = make_app(GRADER_LOGIN_RATE_LIMIT="3 per minute")
    with app.app_context():
        world = make_world()
        client = app.test_client()
        for _ in range(3):
            assert log_in(client, world.student.email, "wrong").status_code == 200
        refused = log_in(client, world.student.email, world.student.password)
        assert refused.status_code == 429
        assert not logged_in(client)
        assert client.get("/login").status_code == 200  # the form itself is never limited


def test_an_app_built_after_another_s_limiter_store_failed_counts_in_its_own_store(
        make_app: Callable[..., Flask]) -> None:
    """Once an earlier app in this process found its limiter store down, does a new app count logins in its own
    store from the start, and refuse the guess past its limit? (It counted in the fallback, then switched.)"""
    failed = make_app(RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0")
    with failed.app_context():
        world = make_world()
        assert log_in(failed.test_client(), world.student.email, "wrong").status_code == 200
        assert limiter.limiter.storage is not limiter.storage  # that app counts in the in-memory fallback
    app = make_app(GRADER_LOGIN_RATE_LIMIT="3 per minute")
    assert limiter.limiter.storage is limiter.storage
    with app.app_context():
        world = make_world()
        client = app.test_client()
        for _ in range(3):
            assert log_in(client, world.student.email, "wrong").status_code == 200
        assert limiter.limiter.storage is limiter.storage
        assert log_in(client, world.student.email, world.student.password).status_code == 429


@pytest.mark.parametrize("change", ["password", "new token", "revoked token"])
def test_changing_credentials_ends_existing_sessions(client: FlaskClient, world: World, change: str) -> None:
    """Does changing the password, or issuing or revoking the API token, log out every existing session?"""
    assert log_in(client, world.student.email, world.student.password).status_code == 302
    assert logged_in(client)
    user = world.student.user
    {"password": lambda: user.set_password("a new one"), "new token": lambda: issue_token(user),
     "revoked token": lambda: revoke_token(user)}[change]()
    db.session.commit()
    assert not logged_in(client)


def test_an_unchanged_session_survives_other_users_changes(client: FlaskClient, world: World) -> None:
    """Does another user's password change leave this session alone?"""
    log_in(client, world.student.email, world.student.password)
    world.student2.user.set_password("changed")
    db.session.commit()
    assert logged_in(client)


def test_sessions_expire_after_the_idle_time(make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch) -> None:
    """Is a session idle for longer than GRADER_SESSION_IDLE_SECONDS refused, and one used in time kept?"""
    app = make_app(GRADER_SESSION_IDLE_SECONDS=600)
    with app.app_context():
        world = make_world()
        client = app.test_client()
        log_in(client, world.student.email, world.student.password)
        start = time.time()
        monkeypatch.setattr(identity.time, "time", lambda: start + 590)
        assert logged_in(client)  # used within the limit: its clock restarts
        monkeypatch.setattr(identity.time, "time", lambda: start + 590 + 599)
        assert logged_in(client)
        monkeypatch.setattr(identity.time, "time", lambda: start + 590 + 599 + 601)
        assert not logged_in(client)


def test_session_cookie_lifetime_is_the_idle_time(make_app: Callable[..., Flask]) -> None:
    """Does the browser drop the session cookie after the idle time too?"""
    app = make_app(GRADER_SESSION_IDLE_SECONDS=900)
    assert app.permanent_session_lifetime.total_seconds() == 900
