"""The test client every test app gets (`tests.conftest.isolated_app`): a request reads the database as a real
server's would, whatever the test's own app context has loaded.

Tests keep an app context pushed for their own database work, and a plain FlaskClient request reuses it, with its
session: a row the test still holds (or one that a reference cycle keeps alive until the garbage collector runs,
as an exception caught in a request does) is then answered from memory. A stack test read a submission as
queued for 150 s while its worker had graded it that way."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

from grader.extensions import db
from grader.models import Submission
from tests.conftest import REFERENCE_SOLUTION, World, upload


def _status_after_another_process_grades(app: Flask, client: FlaskClient, world: World) -> str:
    """Upload, hold the submission's object in the test's session, mark it graded over a connection of another
    engine (as a worker does), and read it back through `client`."""
    response = upload(client, "autograd", REFERENCE_SOLUTION.read_bytes(), headers=world.student.headers)
    submission_id = response.json["id"]
    held = db.session.get(Submission, submission_id)
    assert held is not None and held.status == "queued"
    other = create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    try:
        with other.begin() as connection:
            connection.execute(text("UPDATE submission SET status = 'graded' WHERE id = :id"), {"id": submission_id})
    finally:
        other.dispose()
    return client.get(f"/api/v1/submissions/{submission_id}", headers=world.student.headers).json["status"]


def test_does_a_request_read_what_another_process_committed_while_the_test_holds_the_row(
        app: Flask, client: FlaskClient, world: World) -> None:
    assert _status_after_another_process_grades(app, client, world) == "graded"


def test_would_a_plain_flask_client_answer_from_the_tests_session(app: Flask, world: World) -> None:
    """The hazard the isolated client removes is real (else the test above proves nothing)."""
    app.test_client_class = FlaskClient
    assert _status_after_another_process_grades(app, app.test_client(), world) == "queued"
