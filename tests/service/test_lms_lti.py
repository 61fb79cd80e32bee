"""LTI 1.3 against a small platform on loopback: OIDC login → launch → logged into the course with the LTI
role; then a graded submission's score published to the platform's line item through AGS, retried."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from grader.auth.identity import issue_token
from grader.cli.lms import lms_group
from grader.extensions import db
from grader.models import Enrollment, User
from grader.models.lms import LtiIdentity, LtiLineItem, LtiScore
from tests.conftest import Factory, upload
from tests.support.lms_helpers import embedded_worker, wait_until
from tests.support.lti_platform import (
    CLAIM,
    INSTRUCTOR,
    LEARNER,
    FormReader,
    Platform,
    PlatformUser,
    oidc_launch,
    rsa_pair,
)
from worker.engine.result import DeliverableResult, GradeResult
from worker.engine.result import TestResult as Verdict


@pytest.fixture
def lti_app(make_app: Callable[..., Flask]) -> Iterator[Flask]:
    """An app on the memory broker (embedded worker) with fast retries, DEMO101 and autograd."""
    app = make_app(BROKER_URL="memory://", GRADER_LMS_RETRY_DELAYS="0.2,0.4", GRADER_LMS_TIMEOUT=5)
    with app.app_context():
        factory = Factory()
        factory.assignment(factory.course("DEMO101"), "autograd")
        yield app


@pytest.fixture
def platform(lti_app: Flask) -> Iterator[Platform]:
    """The platform, registered with the tool through `grader lms lti add`, knowing the tool's JWKS."""
    with Platform() as running:
        result = lti_app.test_cli_runner().invoke(lms_group, running.registration_args())
        assert result.exit_code == 0, result.output
        assert "jwks-url: /lti/jwks" in result.output
        running.tool_jwks = lti_app.test_client().get("/lti/jwks").json
        running.users["ada"] = PlatformUser("sub-ada-1", "ada@uni.example", "Ada Lovelace", [LEARNER])
        running.users["prof"] = PlatformUser("sub-prof-1", "prof@uni.example", "Prof Babbage", [INSTRUCTOR])
        yield running


def test_launch_logs_the_student_into_the_course(lti_app: Flask, platform: Platform) -> None:
    """Does the OIDC login → launch round trip log a new platform user into DEMO101 as a student, and
    remember the line item for the assignment?"""
    client = lti_app.test_client()
    launched, _ = oidc_launch(client, platform, "ada")
    assert launched.status_code == 200, launched.data
    assert b"DEMO101" in launched.data and b"student" in launched.data
    me = client.get("/api/v1/me")
    assert me.status_code == 200
    assert me.json["email"] == "ada@uni.example"
    assert me.json["courses"] == [{"code": "DEMO101", "role": "student"}]
    identity = db.session.scalar(select(LtiIdentity).where(LtiIdentity.sub == "sub-ada-1"))
    assert identity.user.email == "ada@uni.example"
    item = db.session.scalar(select(LtiLineItem))
    assert item.url == platform.lineitem and item.assignment.slug == "autograd"


def test_a_launch_holds_no_database_transaction_while_the_platform_serves_its_keys(
        lti_app: Flask, platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the tool fetches the platform's public keys (JWKS) to check a launch's signature, is the web
    request's database session out of any transaction, so that a slow platform holds no locks of ours?"""
    in_transaction: list[bool] = []
    send = requests.Session.send

    def watched(self: requests.Session, request: requests.PreparedRequest, **kwargs: object) -> object:
        if request.url == platform.base_url + "/jwks":
            in_transaction.append(db.session().in_transaction())  # the request's own session
        return send(self, request, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(requests.Session, "send", watched)
    launched, _ = oidc_launch(lti_app.test_client(), platform, "ada")
    assert launched.status_code == 200, launched.data
    assert in_transaction == [False]


def test_launch_as_instructor_gives_instructor_rights(lti_app: Flask, platform: Platform) -> None:
    """Does a launch with the Instructor role make the user an instructor of the course (gradebook access)?"""
    client = lti_app.test_client()
    launched, _ = oidc_launch(client, platform, "prof")
    assert launched.status_code == 200
    assert client.get("/api/v1/me").json["courses"] == [{"code": "DEMO101", "role": "instructor"}]
    assert client.get("/api/v1/assignments/autograd/scores").status_code == 200


def test_existing_account_is_linked_by_email(lti_app: Flask, platform: Platform) -> None:
    """Is a platform user whose email the service already knows linked to that account, not duplicated?"""
    Factory().person("ada@uni.example", external_id="canvas-ada")
    users = len(db.session.scalars(select(User)).all())
    launched, _ = oidc_launch(lti_app.test_client(), platform, "ada")
    assert launched.status_code == 200
    assert len(db.session.scalars(select(User)).all()) == users
    user = db.session.scalar(select(User).where(User.email == "ada@uni.example"))
    assert db.session.scalar(select(Enrollment.role).where(Enrollment.user_id == user.id)) == "student"


def test_replayed_launch_is_refused(lti_app: Flask, platform: Platform) -> None:
    """Is the same id_token posted a second time (a replay) refused, its nonce being used up?"""
    client = lti_app.test_client()
    first, fields = oidc_launch(client, platform, "ada")
    assert first.status_code == 200
    again = client.post("/lti/launch", data=fields)
    assert again.status_code == 401 and b"Nonce" in again.data


def started_login(client: FlaskClient, platform: Platform) -> tuple[dict[str, str], str]:
    """Start a login and get the platform's form; returns (form fields, the tool's nonce)."""
    start = client.post("/lti/login", data=platform.login_initiation("ada"))
    with requests.Session() as browser:
        form = FormReader()
        form.feed(browser.get(start.headers["Location"], timeout=5).text)
    return form.fields, start.headers["Location"].split("nonce=")[1].split("&")[0]


def test_forged_or_foreign_launches_are_refused(lti_app: Flask, platform: Platform) -> None:
    """Are launches signed by another key, for an unknown deployment, or without the browser's state cookie
    refused — and is a login from an unknown issuer refused?"""
    client = lti_app.test_client()
    user = platform.users["ada"]
    forged_key, _ = rsa_pair()
    for forge, why in (
        (lambda nonce: platform.id_token(user, nonce, key=forged_key), b"decode"),
        (lambda nonce: platform.id_token(user, nonce, **{CLAIM + "deployment_id": "other"}), b"deployment"),
        (lambda nonce: platform.id_token(user, nonce, aud="someone-else"), b"Registration not found"),
    ):
        fields, nonce = started_login(client, platform)
        refused = client.post("/lti/launch", data={**fields, "id_token": forge(nonce)})
        assert refused.status_code == 401 and why in refused.data, refused.data
    fields, _ = started_login(client, platform)
    stranger = lti_app.test_client()  # a browser that never started this login: no state cookie
    assert stranger.post("/lti/launch", data=fields).status_code == 401
    unknown = client.post("/lti/login", data={**platform.login_initiation("ada"), "iss": "https://evil.example"})
    assert unknown.status_code == 400
    assert db.session.scalar(select(LtiIdentity)) is None


def launched_token(client: FlaskClient, platform: Platform, login_hint: str) -> str:
    """Launch as the platform user `login_hint`, then issue their account an API token (to upload with)."""
    launched, _ = oidc_launch(client, platform, login_hint)
    assert launched.status_code == 200
    user = platform.users[login_hint]
    token = issue_token(db.session.scalar(select(User).where(User.email == user.email)))
    db.session.commit()
    return token


def fake_engine(monkeypatch: pytest.MonkeyPatch, score: float, visibility: str = "visible") -> None:
    """Replace the grading engine by a canned result of `score` out of 100 (one test per deliverable, of
    `visibility`)."""

    def run_engine(manifest, files, runner):  # type: ignore[no-untyped-def]
        """`score` % of every deliverable."""
        parts = [DeliverableResult(id=d.id, title=d.title, score=d.points * score / 100, max_score=d.points,
                                   tests=[Verdict(name="test_it", status="passed", score=d.points * score / 100,
                                                     max_score=d.points, visibility=visibility)])
                 for d in manifest.deliverables]
        return GradeResult(assignment=manifest.id, status="graded", score=score, max_score=100.0,
                           deliverables=parts, runner="local")

    monkeypatch.setattr("worker.tasks.run_engine", run_engine)


def test_graded_submission_score_reaches_the_platform(lti_app: Flask, platform: Platform,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """After a launch, is a graded submission's score published to the line item through AGS — scoreGiven,
    scoreMaximum, Completed, FullyGraded, a timestamp, the platform's user id — with a token obtained by a
    client assertion the platform verified, even when the platform first answers 503 twice?"""
    fake_engine(monkeypatch, 85.0)
    platform.settings.fail_scores = 2
    client = lti_app.test_client()
    token = launched_token(client, platform, "ada")
    with embedded_worker(lti_app):
        response = upload(client, "autograd", b"def derivative(f, x):\n    return 0\n",
                          headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 202, response.json
        wait_until(lambda: platform.scores)
    assert platform.refused == ["platform busy", "platform busy"]
    (score,) = platform.scores
    assert score.path == "/lineitems/7/lineitem/scores"
    assert score.content_type == "application/vnd.ims.lis.v1.score+json"
    body = score.body
    assert body["userId"] == "sub-ada-1"
    assert (body["scoreGiven"], body["scoreMaximum"]) == (85.0, 100.0)
    assert body["activityProgress"] == "Completed" and body["gradingProgress"] == "FullyGraded"
    assert datetime.fromisoformat(body["timestamp"]).tzinfo is not None
    assert platform.assertion_ids  # the access token came from a verified client assertion
    row = db.session.scalar(select(LtiScore))
    assert row.status == "sent" and row.attempts == 3 and row.sent == body


def test_a_worker_that_dies_just_after_storing_a_grade_still_publishes_it(lti_app: Flask, platform: Platform,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The grade and its publication to the line item commit together: when the worker's process ends right
    after that commit (before it queues anything), is the publication already stored, and does the periodic
    poll publish it?"""
    import worker.tasks
    from grader.lms import ags
    from grader.services import grading

    fake_engine(monkeypatch, 85.0)

    def process_ends(*_: object) -> None:  # the first thing the worker does after the commit
        raise SystemExit("killed")

    monkeypatch.setattr(grading, "_log_outcome", process_ends)
    client = lti_app.test_client()
    token = launched_token(client, platform, "ada")
    response = upload(client, "autograd", b"x = 1\n", headers={"Authorization": f"Bearer {token}"})
    with pytest.raises(SystemExit):
        worker.tasks.grade_submission.apply(args=[response.json["id"]])
    db.session.rollback()
    with db.engine.connect() as other:  # what the next poll finds
        assert other.scalar(select(LtiScore.status)) == "pending"
    with embedded_worker(lti_app):
        assert ags.send_due() == 1
        wait_until(lambda: platform.scores)
    assert platform.scores[0].body["scoreGiven"] == 85.0


def test_a_publication_holds_no_database_transaction_while_the_platform_takes_its_time(
        lti_app: Flask, platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the worker asks the platform for a token and sends the score, is its database session out of any
    transaction, so that it holds no locks and no snapshot?"""
    fake_engine(monkeypatch, 85.0)
    client = lti_app.test_client()
    token = launched_token(client, platform, "ada")
    in_transaction: list[bool] = []
    send = requests.Session.send

    def watched(self: requests.Session, request: object, **kwargs: object) -> object:
        in_transaction.append(db.session().in_transaction())  # the worker thread's own session
        return send(self, request, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(requests.Session, "send", watched)
    with embedded_worker(lti_app):
        upload(client, "autograd", b"x = 1\n", headers={"Authorization": f"Bearer {token}"})
        wait_until(lambda: platform.scores)
    assert in_transaction and not any(in_transaction), in_transaction


def test_a_late_submission_reaches_the_platform_at_its_counted_score(lti_app: Flask, platform: Platform,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """An upload an hour after the due date at 10 % off per day, scoring 85: does the platform get scoreGiven
    76.5 (the counted score, as the gradebook counts it), not the raw 85?"""
    from grader.services.assignments import find_assignment
    from grader.services.policy import set_override

    fake_engine(monkeypatch, 85.0)
    due = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    set_override(find_assignment("autograd"), {"due": due, "late_penalty_per_day": 10, "late_days": 3})
    client = lti_app.test_client()
    token = launched_token(client, platform, "ada")
    with embedded_worker(lti_app):
        response = upload(client, "autograd", b"x = 1\n", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 202, response.json
        wait_until(lambda: platform.scores)
    (score,) = platform.scores
    assert (score.body["scoreGiven"], score.body["scoreMaximum"]) == (76.5, 100.0)


def test_a_score_with_after_due_points_waits_for_the_due_date_before_the_platform_sees_it(
        lti_app: Flask, platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    """A result whose tests are all after_due_date, graded two days before the due date: is nothing sent to the
    platform, the score held for the due date, and sent once the due date has passed?"""
    from grader.lms import ags
    from grader.services.assignments import find_assignment
    from grader.services.policy import set_override

    fake_engine(monkeypatch, 85.0, visibility="after_due_date")
    due = datetime.now(UTC) + timedelta(days=2)
    set_override(find_assignment("autograd"), {"due": due.isoformat()})
    client = lti_app.test_client()
    token = launched_token(client, platform, "ada")
    with embedded_worker(lti_app):
        assert upload(client, "autograd", b"x = 1\n", headers={"Authorization": f"Bearer {token}"}).status_code == 202
        row = wait_until(lambda: db.session.scalar(select(LtiScore)))
        assert ags.send_due() == 0 and not platform.scores
        db.session.refresh(row)
        assert row.status == "pending" and row.attempts == 0 and row.next_attempt_at == due
        set_override(find_assignment("autograd"), {"due": (datetime.now(UTC) - timedelta(minutes=1)).isoformat()})
        row.next_attempt_at = datetime.now(UTC) - timedelta(minutes=1)  # the old due date has come
        db.session.commit()
        assert ags.send_due() == 1
        wait_until(lambda: platform.scores)
    assert platform.scores[0].body["scoreGiven"] == 85.0


def test_platform_down_for_good_marks_the_score_failed(lti_app: Flask, platform: Platform,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """When the platform keeps refusing, do attempts stop after the configured retries with the reason kept?"""
    fake_engine(monkeypatch, 40.0)
    platform.settings.fail_scores = 100
    client = lti_app.test_client()
    token = launched_token(client, platform, "ada")
    with embedded_worker(lti_app):
        upload(client, "autograd", b"x = 1\n", headers={"Authorization": f"Bearer {token}"})
        row = wait_until(lambda: db.session.scalar(select(LtiScore).where(LtiScore.status == "failed")))
    assert row.attempts == 3 and "503" in row.last_error and not platform.scores
