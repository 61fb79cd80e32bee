"""The course policy through the service and the API: refused uploads (too early, closed, limit reached,
cooling down) are clear 4xx JSON errors that store nothing; lateness is decided at upload and kept; the
counted score (raw times credit) is what the gradebook, the CSV and the API show; extensions and overrides."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from grader.extensions import db
from grader.models import Submission
from grader.services.policy import set_override
from tests.conftest import World, upload
from tests.support.dashboard_support import full, grade_run

SOURCE = b"def f(x):\n    return x\n"


def at(**delta: float) -> str:
    """Now plus `delta`, ISO 8601 UTC."""
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


def stored() -> int:
    """How many submissions the database holds."""
    return int(db.session.scalar(select(func.count()).select_from(Submission)) or 0)


def put_policy(client: FlaskClient, world: World, **fields: Any) -> Any:
    """Set the offering's override through the API, as the instructor."""
    return client.put("/api/v1/assignments/autograd/policy", json=fields, headers=world.instructor.headers)


@pytest.mark.parametrize(("fields", "status", "code", "words"), [
    ({"release": "in an hour"}, 403, "not_released", "uploads open on"),
    ({"due": "two hours ago", "hard_close": "an hour ago"}, 403, "closed", "closed on"),
])
def test_an_upload_outside_the_open_window_is_refused_and_stores_nothing(
        app: Flask, client: FlaskClient, world: World, fields: dict[str, str], status: int, code: str,
        words: str) -> None:
    """Before the release or after the hard close, is the upload a 4xx JSON error saying why, with nothing
    stored?"""
    times = {"in an hour": at(hours=1), "two hours ago": at(hours=-2), "an hour ago": at(hours=-1)}
    assert put_policy(client, world, **{k: times[v] for k, v in fields.items()}).status_code == 200
    response = upload(client, "autograd", SOURCE, headers=world.student.headers)
    assert response.status_code == status, response.json
    assert response.json["error"] == code and words in response.json["detail"]
    assert stored() == 0


def test_the_submission_after_the_limit_is_refused_and_says_none_are_left(
        app: Flask, client: FlaskClient, world: World) -> None:
    """With max_submissions = 1, is the second upload a 403 limit_reached, and does standing say 0 left?"""
    put_policy(client, world, max_submissions=1)
    standing = client.get("/api/v1/assignments/autograd/standing", headers=world.student.headers).json
    assert standing["submissions_left"] == 1 and standing["can_upload"] is True
    assert upload(client, "autograd", SOURCE, headers=world.student.headers).status_code == 202
    refused = upload(client, "autograd", SOURCE, headers=world.student.headers)
    assert refused.status_code == 403 and refused.json["error"] == "limit_reached"
    standing = client.get("/api/v1/assignments/autograd/standing", headers=world.student.headers).json
    assert standing["submissions_left"] == 0 and standing["refusal"] == "limit_reached"
    assert stored() == 1
    # The limit is per student: the other student still has theirs.
    assert upload(client, "autograd", SOURCE, headers=world.student2.headers).status_code == 202


def test_an_upload_during_the_cooldown_is_a_429_naming_when_the_next_is_possible(
        app: Flask, client: FlaskClient, world: World) -> None:
    """With a 30-minute cooldown, is the second upload a 429 cooling_down whose Retry-After header and standing
    say when the next is possible?"""
    put_policy(client, world, cooldown_minutes=30)
    assert upload(client, "autograd", SOURCE, headers=world.student.headers).status_code == 202
    refused = upload(client, "autograd", SOURCE, headers=world.student.headers)
    assert refused.status_code == 429 and refused.json["error"] == "cooling_down"
    assert "wait 30 minutes" in refused.json["detail"]
    assert 30 * 60 - 60 < int(refused.headers["Retry-After"]) <= 30 * 60
    standing = client.get("/api/v1/assignments/autograd/standing", headers=world.student.headers).json
    assert standing["next_upload_at"] is not None and not standing["can_upload"]
    assert stored() == 1


def test_a_late_upload_keeps_its_credit_and_the_gradebook_shows_raw_penalty_and_counted(
        app: Flask, client: FlaskClient, world: World) -> None:
    """An upload an hour after the due date at 10 % off per day: is it stored at 90 % credit, and do the API, the
    gradebook and the CSV show 100 raw, 10 penalty, 90 counted?"""
    put_policy(client, world, due=at(hours=-1), late_penalty_per_day=10, late_days=3)
    response = upload(client, "autograd", SOURCE, headers=world.student.headers)
    assert response.status_code == 202, response.json
    submission = db.session.get(Submission, response.json["id"])
    assert submission.credit == 90 and 3600 <= submission.late_seconds < 3700
    grade_run(submission.runs[0], full(world.assignment))
    doc = client.get(f"/api/v1/submissions/{submission.id}", headers=world.student.headers).json
    assert doc["late"]["credit"] == 90 and doc["late"]["late"] is True
    assert (doc["score"], doc["counted_score"]) == (100.0, 90.0)
    book = client.get("/api/v1/assignments/autograd/scores", headers=world.instructor.headers).json
    row = next(r for r in book["students"] if r["email"] == world.student.email)
    assert (row["raw_score"], row["late_penalty"], row["score"], row["credit"]) == (100.0, 10.0, 90.0, 90.0)
    from tests.support.dashboard_support import login

    browser = app.test_client()
    login(browser, world.instructor)
    csv = browser.get("/instructor/assignments/autograd/gradebook.csv").get_data(as_text=True).splitlines()
    assert csv[0].endswith("raw_total,late_penalty,total")
    assert any(line.endswith(",100,10,90") for line in csv[1:])


def test_work_uploaded_on_time_stays_on_time_when_its_grade_arrives_after_the_deadline(
        app: Flask, client: FlaskClient, world: World) -> None:
    """A rush drains after the due date: is on-time work still counted at full credit?"""
    put_policy(client, world, due=at(hours=1), late_penalty_per_day=50, late_days=1)
    response = upload(client, "autograd", SOURCE, headers=world.student.headers)
    set_override(world.assignment, {"due": at(hours=-1), "late_penalty_per_day": 50, "late_days": 1})
    submission = db.session.get(Submission, response.json["id"])
    grade_run(submission.runs[0], full(world.assignment))
    book = client.get("/api/v1/assignments/autograd/scores", headers=world.instructor.headers).json
    row = next(r for r in book["students"] if r["email"] == world.student.email)
    assert (row["score"], row["credit"], row["late_seconds"]) == (100.0, 100.0, 0)


def test_best_counts_the_higher_score_after_the_penalty(app: Flask, client: FlaskClient, world: World) -> None:
    """On time 80, late 100 at 50 %: does "best" count the on-time 80 rather than the late 50, and does the
    student's standing say that their best counts?"""
    standing = "/api/v1/assignments/autograd/standing"
    assert client.get(standing, headers=world.student.headers).json["counts"] == "latest"
    world.assignment.score_policy = "best"
    db.session.commit()
    assert client.get(standing, headers=world.student.headers).json["counts"] == "best"
    put_policy(client, world, due=at(hours=1), late_penalty_per_day=50, late_days=1)
    on_time = upload(client, "autograd", SOURCE, headers=world.student.headers).json["id"]
    grade_run(db.session.get(Submission, on_time).runs[0], full(world.assignment, simple_gradients=0))
    put_policy(client, world, due=at(hours=-1), late_penalty_per_day=50, late_days=1)
    late = upload(client, "autograd", SOURCE, headers=world.student.headers).json["id"]
    grade_run(db.session.get(Submission, late).runs[0], full(world.assignment))
    book = client.get("/api/v1/assignments/autograd/scores", headers=world.instructor.headers).json
    row = next(r for r in book["students"] if r["email"] == world.student.email)
    assert (row["submission_id"], row["score"]) == (on_time, 80.0)


def test_may_an_instructor_read_a_students_standing_and_a_student_only_their_own(
        client: FlaskClient, world: World) -> None:
    """Does `?email=` give an instructor that student's standing (their extension, their submissions left), a
    student their own when they name themselves and a 403 for anyone else's, and a student not in the course a 404,
    each refusal telling nothing of the other student?"""
    put_policy(client, world, due=at(hours=-1), hard_close=at(hours=-1), max_submissions=3)
    granted = client.post("/api/v1/assignments/autograd/extensions", headers=world.instructor.headers,
                          json={"email": world.student.email, "days": 2, "reason": "illness"})
    assert granted.status_code == 200, granted.json
    assert upload(client, "autograd", SOURCE, headers=world.student.headers).status_code == 202
    url = "/api/v1/assignments/autograd/standing?email="
    theirs = client.get(url + world.student.email.upper(), headers=world.instructor.headers)
    assert theirs.status_code == 200, theirs.json
    assert theirs.json["extended"] and theirs.json["extension_reason"] == "illness"
    assert theirs.json["submissions_left"] == 2 and theirs.json["can_upload"]
    other = client.get(url + world.student2.email, headers=world.instructor.headers).json
    assert not other["extended"] and other["refusal"] == "closed" and other["submissions_left"] == 3
    own = client.get(url + world.student.email, headers=world.student.headers)
    assert own.status_code == 200 and own.json == theirs.json
    assert client.get(url, headers=world.student.headers).json == theirs.json  # an empty one: the caller's
    refused = client.get(url + world.student2.email, headers=world.student.headers)
    assert refused.status_code == 403 and "illness" not in refused.get_data(as_text=True)
    assert client.get(url + world.outsider.email, headers=world.instructor.headers).status_code == 404
    foreign = client.get(url + world.student.email, headers=world.other_instructor.headers)
    assert foreign.status_code == 403 and "illness" not in foreign.get_data(as_text=True)


def test_an_extension_lets_one_student_upload_on_time_after_the_due_date(
        app: Flask, client: FlaskClient, world: World) -> None:
    """With the due date passed and closed, can the student given two extra days upload at full credit,
    while the other student is refused?"""
    put_policy(client, world, due=at(hours=-1), hard_close=at(hours=-1))
    granted = client.post("/api/v1/assignments/autograd/extensions", headers=world.instructor.headers,
                          json={"email": world.student.email, "days": 2, "reason": "illness"})
    assert granted.status_code == 200, granted.json
    response = upload(client, "autograd", SOURCE, headers=world.student.headers)
    assert response.status_code == 202, response.json
    assert db.session.get(Submission, response.json["id"]).credit == 100
    assert upload(client, "autograd", SOURCE, headers=world.student2.headers).status_code == 403
    standing = client.get("/api/v1/assignments/autograd/standing", headers=world.student.headers).json
    assert standing["extended"] is True and standing["extension_reason"] == "illness"
    listed = client.get("/api/v1/assignments/autograd/policy", headers=world.instructor.headers).json
    assert [e["email"] for e in listed["extensions"]] == [world.student.email]
    gone = client.delete(f"/api/v1/assignments/autograd/extensions/{world.student.email}",
                         headers=world.instructor.headers)
    assert gone.status_code == 200 and gone.json["extensions"] == []


@pytest.mark.parametrize(("body", "code"), [
    ({"email": "student@example.edu"}, "bad_extension"),
    ({"email": "student@example.edu", "days": 1, "due": "2030-01-01T00:00:00Z"}, "bad_extension"),
    ({"email": "student@example.edu", "due": "next tuesday"}, "bad_policy"),
    ({"email": "nobody@example.edu", "days": 1}, "not_found"),
    ({"email": "student@example.edu", "days": -1}, "bad_extension"),
])
def test_a_bad_extension_request_is_a_4xx_with_a_reason(app: Flask, client: FlaskClient, world: World,
                                                        body: dict[str, Any], code: str) -> None:
    """Is an extension with neither or both of due/days, a bad date, or an unknown student refused clearly?"""
    put_policy(client, world, due=at(hours=-1))
    response = client.post("/api/v1/assignments/autograd/extensions", headers=world.instructor.headers, json=body)
    assert 400 <= response.status_code < 500 and response.json["error"] == code, response.json


def test_only_instructors_change_the_policy(app: Flask, client: FlaskClient, world: World) -> None:
    """Is a student's attempt to change the policy or grant themselves an extension a 403?"""
    assert client.put("/api/v1/assignments/autograd/policy", json={"due": at(days=9)},
                      headers=world.student.headers).status_code == 403
    assert client.post("/api/v1/assignments/autograd/extensions", headers=world.student.headers,
                       json={"email": world.student.email, "days": 3}).status_code == 403


def test_an_inconsistent_override_is_refused_and_changes_nothing(app: Flask, client: FlaskClient,
                                                                 world: World) -> None:
    """Is a hard close before the due date a 400 bad_policy, with the override left as it was?"""
    response = put_policy(client, world, due=at(hours=1), hard_close=at(hours=-1))
    assert response.status_code == 400 and response.json["error"] == "bad_policy"
    assert "hard close" in response.json["detail"]
    db.session.refresh(world.assignment)
    assert world.assignment.policy_override is None


@pytest.mark.parametrize(("fields", "words"), [
    ({"max_submissions": True}, "max_submissions must be a whole number"),
    ({"cooldown_minutes": True}, "cooldown_minutes must be a number"),
    ({"late_penalty_per_day": True, "late_days": 2}, "late_penalty_per_day must be a number"),
    ({"late_steps": [{"until": "2031-01-02T00:00:00Z", "credit": True}]}, "a late step's credit must be a number"),
])
def test_is_true_where_a_number_goes_refused_rather_than_stored_as_1(
        app: Flask, client: FlaskClient, world: World, fields: dict[str, Any], words: str) -> None:
    """Is JSON's `true` for a policy number (or an extension's days) a 400 that keeps the override? (It passed the
    schema's lax integer and was stored as 1: one submission in all, a one-minute cooldown, 1 % credit.)"""
    assert put_policy(client, world, due="2031-01-01T00:00:00Z", max_submissions=4).status_code == 200
    response = put_policy(client, world, due="2031-01-01T00:00:00Z", **fields)
    assert response.status_code == 400 and response.json["error"] == "bad_policy", response.json
    assert words in response.json["detail"] and "not True" in response.json["detail"]
    db.session.refresh(world.assignment)
    assert world.assignment.policy_override["max_submissions"] == 4
    answer = client.post("/api/v1/assignments/autograd/extensions", headers=world.instructor.headers,
                         json={"email": world.student.email, "days": True})
    assert answer.status_code == 400 and "days must be a number" in answer.json["detail"], answer.json
    assert client.get("/api/v1/assignments/autograd/policy",
                      headers=world.instructor.headers).json["extensions"] == []


@pytest.mark.parametrize(("fields", "words"), [
    ({"max_submissions": 0}, "max_submissions"),
    ({"late_penalty_per_day": 0, "late_days": 2}, "late_penalty_per_day"),
    ({"late_penalty_per_day": 10, "late_days": 0}, "late_days"),
])
def test_is_a_zero_that_means_none_refused_as_the_schema_documents(
        app: Flask, client: FlaskClient, world: World, fields: dict[str, Any], words: str) -> None:
    """Is a 0 where the service asks at least 1 (or above 0) a 400 naming the field, keeping the override, and does
    the OpenAPI document give the same lower bound? (It said 0 was allowed for max_submissions and late_days.)"""
    assert put_policy(client, world, due="2031-01-01T00:00:00Z", max_submissions=4).status_code == 200
    response = put_policy(client, world, due="2031-01-01T00:00:00Z", **fields)
    assert response.status_code == 400 and response.json["error"] == "bad_policy", response.json
    assert words in str(response.json["detail"]), response.json
    db.session.refresh(world.assignment)
    assert world.assignment.policy_override["max_submissions"] == 4
    schema = client.get("/api/v1/openapi.json").json["components"]["schemas"]["PolicyOverride"]["properties"]
    lows = {name: [(k, v) for option in schema[name]["anyOf"] for k, v in option.items()
                   if k in ("minimum", "exclusiveMinimum")] for name in fields}
    assert lows == {name: [("exclusiveMinimum", 0)] if name == "late_penalty_per_day" else [("minimum", 1)]
                    for name in fields}, lows


@pytest.mark.parametrize("body", [
    {"data": "due=2030-01-01"},  # a form, as `curl -d` sends it
    {"data": "{not json", "content_type": "application/json"},
    {"data": "null", "content_type": "application/json"},
    {"json": []},
    {},  # no body at all
])
def test_is_an_override_that_is_not_a_json_object_refused_leaving_the_policy_as_it_was(
        app: Flask, client: FlaskClient, world: World, body: dict[str, Any]) -> None:
    """Is a body that is not a JSON object a 400 bad_policy that keeps the override? (Each used to pass for an
    empty override, which puts the manifest's policy back: the offering's due date and limits wiped.)"""
    assert put_policy(client, world, due=at(days=3), max_submissions=4).status_code == 200
    response = client.put("/api/v1/assignments/autograd/policy", headers=world.instructor.headers, **body)
    assert response.status_code == 400 and response.json["error"] == "bad_policy", response.json
    assert "JSON object" in response.json["detail"]
    db.session.refresh(world.assignment)
    assert world.assignment.policy_override["max_submissions"] == 4
    answer = client.post("/api/v1/assignments/autograd/extensions", headers=world.instructor.headers, **body)
    assert answer.status_code == 400 and answer.json["error"] == "bad_extension", answer.json
    assert put_policy(client, world).json["override"] is None  # `{}` is the way back to the manifest's


def test_uploads_racing_for_the_last_submission_on_postgresql_store_exactly_one(
        make_app: Any) -> None:
    """On PostgreSQL, with one submission allowed, do four uploads by the same student sent at the same instant
    (four threads, four connections) store exactly one submission, the other three refused limit_reached?"""
    import threading

    from tests.conftest import Factory, fresh_postgres_database, make_world

    with fresh_postgres_database() as url:
        app = make_app(SQLALCHEMY_DATABASE_URI=url, BROKER_URL="memory://")
        with app.app_context():
            world = make_world(Factory())
            set_override(world.assignment, {"max_submissions": 1})
            headers = world.student.headers
        start = threading.Barrier(4)
        answers: list[Any] = []

        def send() -> None:
            client = app.test_client()
            start.wait()
            answers.append(upload(client, "autograd", SOURCE, headers=headers))

        threads = [threading.Thread(target=send) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        codes = sorted(answer.status_code for answer in answers)
        assert codes == [202, 403, 403, 403], [answer.json for answer in answers]
        assert {answer.json["error"] for answer in answers if answer.status_code == 403} == {"limit_reached"}
        with app.app_context():
            assert stored() == 1
            db.session.remove()


@pytest.mark.parametrize("entry", ["api", "page", "lms"])
def test_an_upload_received_before_a_hard_close_is_on_time_however_late_the_server_gets_to_it(
        make_app: Any, entry: str) -> None:
    """On PostgreSQL, with the due date also the hard close, is an upload (through the API, the upload page or an
    LMS webhook) whose bytes had all arrived a second before it, but which the server got to only two seconds
    after it (the student's lock held by another transaction meanwhile, as a concurrent upload of theirs or a
    loaded server delays one), accepted on time at full credit rather than refused as closed?"""
    import threading
    import time

    import sqlalchemy as sa

    from tests.conftest import Factory, fresh_postgres_database, make_world

    with fresh_postgres_database() as url:
        app = make_app(SQLALCHEMY_DATABASE_URI=url, BROKER_URL="memory://")
        with app.app_context():
            world = make_world(Factory())
            due = datetime.now(UTC) + timedelta(seconds=5)
            set_override(world.assignment, {"due": due.isoformat(), "hard_close": due.isoformat()})
            send = _sender(app, world, entry)
            user_id = world.student.user.id
        holder = sa.create_engine(url)
        answers: list[Any] = []
        sender = threading.Thread(target=lambda: answers.append(send()))
        try:
            with holder.connect() as connection, connection.begin():
                connection.execute(sa.text("SELECT id FROM enrollment WHERE user_id = :user FOR UPDATE"),
                                   {"user": user_id})
                time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds() - 1))
                sender.start()  # a second before the due date
                time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds() + 2))
                assert sender.is_alive(), "the upload did not wait for the student's lock"
            sender.join(60)
        finally:
            holder.dispose()
        [answer] = answers
        assert answer.status_code in (202, 302), answer.get_data(as_text=True)[:2000]
        with app.app_context():
            submission = db.session.scalar(select(Submission))
            assert submission is not None and (submission.late_seconds, submission.credit) == (0, 100.0)
            assert submission.created_at < due  # when it arrived, not when the server got to it
            db.session.remove()


def _sender(app: Flask, world: World, entry: str) -> Any:
    """A function that sends the student's upload through `entry`, everything before the upload itself (login,
    the form's tokens, the LMS's secret) done now."""
    from io import BytesIO

    from grader.lms import integrations
    from tests.service.test_service_pages import csrf_token, log_in
    from tests.support.lms_helpers import signed_headers, submission_body

    client = app.test_client()
    if entry == "api":
        return lambda: upload(client, "autograd", SOURCE, headers=world.student.headers)
    if entry == "page":
        log_in(client, world.student.email, world.student.password)
        page = client.get("/assignments/autograd/upload").get_data(as_text=True)
        return lambda: client.post("/assignments/autograd/upload", content_type="multipart/form-data", data={
            "csrf_token": csrf_token(page), "file": (BytesIO(SOURCE), "solution.py")})
    _, secrets = integrations.add_integration("canvas", "DEMO101")
    body = submission_body(SOURCE, external_id=world.student.user.external_id, email=world.student.email)
    assert secrets.inbound
    headers = signed_headers(secrets.inbound, body)
    return lambda: client.post("/api/v1/lms/canvas/submissions", data=body, headers=headers)
