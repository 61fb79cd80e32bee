"""Uploads sent twice: an API client's Idempotency-Key, and the upload form's own key.

A client whose upload's answer never arrived (a proxy's timeout at the deadline, a dropped connection) cannot
know whether it was stored; a student without JavaScript may click twice. Sent again with its key, the upload
gets the submission it made, stored, queued and counted by the policy once.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Interval, func, literal, select, update

from grader.extensions import db
from grader.models import GradingRun, Submission
from grader.services.policy import set_override
from tests.conftest import REFERENCE_SOLUTION, STARTER_SOLUTION, World, fresh_postgres_database, make_world
from tests.service.test_service_pages import csrf_token, log_in
from tests.support.lms_helpers import signed_headers, submission_body
from tests.support.recovery_support import Watcher, assert_graded_exactly_once
from tests.support.service_stack import COMMIT_HOOKS, Stack, logs, running_stack, wait_for

UPLOAD = "/api/v1/assignments/autograd/submissions"


def send(client: FlaskClient, world: World, content: bytes, key: str | None, who: str = "student") -> Any:
    """An API upload of `content` as solution.py by `who`, with `key` as its Idempotency-Key when given."""
    headers = dict(getattr(world, who).headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(UPLOAD, headers=headers, data={"file": (BytesIO(content), "solution.py")},
                       content_type="multipart/form-data")


def counts() -> tuple[int, int]:
    """(submissions, grading runs) in the database."""
    return (int(db.session.scalar(select(func.count()).select_from(Submission)) or 0),
            int(db.session.scalar(select(func.count()).select_from(GradingRun)) or 0))


def test_an_upload_sent_again_with_its_key_gets_the_same_submission_counted_once(
        client: FlaskClient, world: World) -> None:
    """With one submission allowed and a cooldown, does the same upload sent again with its Idempotency-Key get a
    202 for the submission it made (not a refusal for the limit or the cooldown), with nothing stored or queued a
    second time, while an upload without the key is refused as the policy says?"""
    set_override(world.assignment, {"max_submissions": 1, "cooldown_minutes": 30})
    first = send(client, world, REFERENCE_SOLUTION.read_bytes(), "6f1b1f0e-retry-me")
    assert first.status_code == 202, first.json
    again = send(client, world, REFERENCE_SOLUTION.read_bytes(), "6f1b1f0e-retry-me")
    assert again.status_code == 202, again.json
    assert again.json["id"] == first.json["id"] and again.headers["Location"] == first.headers["Location"]
    assert counts() == (1, 1)
    other = send(client, world, REFERENCE_SOLUTION.read_bytes(), None)
    assert other.status_code in (403, 429) and other.json["error"] in ("limit_reached", "cooling_down")
    assert counts() == (1, 1)
    # The submission's own document says nothing of keys: they are the client's.
    assert "upload_key" not in client.get(first.headers["Location"], headers=world.student.headers).json


def test_a_key_sent_with_another_upload_is_refused_and_keys_are_each_student_s_own(
        client: FlaskClient, world: World) -> None:
    """Is a key sent again with other content a 422 idempotency_key_reused that stores nothing, and does another
    student's upload with the same key make a submission of its own?"""
    first = send(client, world, REFERENCE_SOLUTION.read_bytes(), "same-key")
    assert first.status_code == 202
    changed = send(client, world, STARTER_SOLUTION.read_bytes(), "same-key")
    assert changed.status_code == 422, changed.json
    assert changed.json["error"] == "idempotency_key_reused"
    assert f"submission {first.json['id']}" in changed.json["detail"]
    assert counts() == (1, 1)
    theirs = send(client, world, REFERENCE_SOLUTION.read_bytes(), "same-key", who="student2")
    assert theirs.status_code == 202 and theirs.json["id"] != first.json["id"]
    assert counts() == (2, 2)


def test_a_key_whose_first_upload_commits_after_the_check_is_answered_by_the_database_s_uniqueness(
        client: FlaskClient, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the key's first upload commits between this request's look-up and its commit (uploads to two courses
    take two locks), does the key's unique constraint make this request answer with that submission, or refuse
    other content, storing nothing either way?"""
    from grader.services import submissions

    first = send(client, world, REFERENCE_SOLUTION.read_bytes(), "k-1")
    look_up = submissions._keyed
    looked: list[str] = []

    def too_early(user: Any, key: str) -> Any:
        """The first look-up misses the submission, as one made before the other request committed would."""
        looked.append(key)
        return None if len(looked) == 1 else look_up(user, key)

    monkeypatch.setattr(submissions, "_keyed", too_early)
    again = send(client, world, REFERENCE_SOLUTION.read_bytes(), "k-1")
    assert again.status_code == 202 and again.json["id"] == first.json["id"], again.json
    assert len(looked) == 2 and counts() == (1, 1)
    looked.clear()
    changed = send(client, world, STARTER_SOLUTION.read_bytes(), "k-1")
    assert changed.status_code == 422 and changed.json["error"] == "idempotency_key_reused"
    assert counts() == (1, 1)


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "tab\there", "caf\u00e9"])
def test_a_malformed_key_is_a_400_that_stores_nothing(client: FlaskClient, world: World, key: str) -> None:
    """Is an empty key, one with white space or a byte outside visible ASCII, or one over 255 characters, a 400
    invalid_idempotency_key, with nothing stored?"""
    response = send(client, world, REFERENCE_SOLUTION.read_bytes(), key)
    assert response.status_code == 400, response.json
    assert response.json["error"] == "invalid_idempotency_key"
    assert counts() == (0, 0)


def test_the_same_key_sent_at_the_same_instant_on_postgresql_stores_one_submission(make_app: Any) -> None:
    """On PostgreSQL, do four copies of one upload with one key, sent at the same instant (four threads, four
    connections), each get a 202 for the one submission stored?"""
    from tests.conftest import Factory, fresh_postgres_database, make_world

    with fresh_postgres_database() as url:
        app = make_app(SQLALCHEMY_DATABASE_URI=url, BROKER_URL="memory://")
        with app.app_context():
            world = make_world(Factory())
        start = threading.Barrier(4)
        answers: list[Any] = []

        def race() -> None:
            client = app.test_client()
            start.wait()
            answers.append(send(client, world, REFERENCE_SOLUTION.read_bytes(), "one-upload"))

        threads = [threading.Thread(target=race) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert [answer.status_code for answer in answers] == [202] * 4, [answer.json for answer in answers]
        assert len({answer.json["id"] for answer in answers}) == 1
        with app.app_context():
            assert counts() == (1, 1)
            db.session.remove()


def test_the_upload_form_sent_twice_makes_one_submission_and_sent_again_with_another_file_makes_a_new_one(
        app: Flask, client: FlaskClient, world: World) -> None:
    """Without JavaScript, does the upload form sent twice (a second click) lead both times to the one submission,
    does the same form sent with another file (the page back from the browser's history) make a new submission
    rather than a refusal, and does every rendering of the form carry a key of its own?"""
    log_in(client, world.student.email, world.student.password)
    page = client.get("/assignments/autograd/upload").get_data(as_text=True)
    key = re.search(r'name="upload_key" type="hidden" value="([^"]+)"', page) or re.search(
        r'id="upload_key" name="upload_key" type="hidden" value="([^"]+)"', page)
    assert key, "the form carries no key"
    again = client.get("/assignments/autograd/upload").get_data(as_text=True)
    assert key.group(1) not in again  # a fresh key each time the form is shown

    def post(content: bytes) -> Any:
        return client.post("/assignments/autograd/upload", content_type="multipart/form-data", data={
            "csrf_token": csrf_token(page), "upload_key": key.group(1),
            "file": (BytesIO(content), "solution.py")})

    first, second = post(REFERENCE_SOLUTION.read_bytes()), post(REFERENCE_SOLUTION.read_bytes())
    assert first.status_code == second.status_code == 302
    assert first.headers["Location"] == second.headers["Location"]
    assert counts() == (1, 1)
    other = post(STARTER_SOLUTION.read_bytes())
    assert other.status_code == 302 and other.headers["Location"] != first.headers["Location"]
    assert counts() == (2, 2)


def test_an_upload_sent_again_with_its_key_is_answered_past_the_upload_rate_limit_and_not_counted(
        make_app: Callable[..., Flask]) -> None:
    """At the upload rate limit, is an upload sent again with its Idempotency-Key still answered with its
    submission (a client whose answer was lost at the deadline must learn that it was stored), without counting
    against the limit, while a new upload, or the key sent with another file or to another assignment, is
    refused as the limit says?"""
    app = make_app(GRADER_UPLOAD_RATE_LIMIT="2 per minute")
    with app.app_context():
        world, client = make_world(), app.test_client()
        first = send(client, world, REFERENCE_SOLUTION.read_bytes(), "lost-answer")
        assert first.status_code == 202, first.json
        for _ in range(3):  # resends: none of them counts
            again = send(client, world, REFERENCE_SOLUTION.read_bytes(), "lost-answer")
            assert again.status_code == 202 and again.json["id"] == first.json["id"], again.json
        assert send(client, world, STARTER_SOLUTION.read_bytes(), "second").status_code == 202  # 2 of 2
        at_limit = send(client, world, REFERENCE_SOLUTION.read_bytes(), "lost-answer")
        assert at_limit.status_code == 202 and at_limit.json["id"] == first.json["id"], at_limit.json
        assert send(client, world, REFERENCE_SOLUTION.read_bytes(), "third").status_code == 429
        assert send(client, world, STARTER_SOLUTION.read_bytes(), "lost-answer").status_code == 429
        elsewhere = client.post("/api/v1/assignments/other/submissions", content_type="multipart/form-data",
                                headers={**world.student.headers, "Idempotency-Key": "lost-answer"},
                                data={"file": (BytesIO(REFERENCE_SOLUTION.read_bytes()), "solution.py")})
        assert elsewhere.status_code == 429, elsewhere.json
        assert counts() == (2, 2)


def test_the_upload_form_sent_again_is_answered_past_the_upload_rate_limit_but_not_with_another_file(
        make_app: Callable[..., Flask]) -> None:
    """At the upload rate limit, does the upload form sent again (a second click) still lead to its submission,
    while the same form with another file, a new upload the page makes of it, is refused as the limit says?"""
    app = make_app(GRADER_UPLOAD_RATE_LIMIT="1 per minute")
    with app.app_context():
        world, client = make_world(), app.test_client()
        log_in(client, world.student.email, world.student.password)
        page = client.get("/assignments/autograd/upload").get_data(as_text=True)
        key = re.search(r'name="upload_key" type="hidden" value="([^"]+)"', page) or re.search(
            r'id="upload_key" name="upload_key" type="hidden" value="([^"]+)"', page)
        assert key, "the form carries no key"

        def post(content: bytes) -> Any:
            return client.post("/assignments/autograd/upload", content_type="multipart/form-data", data={
                "csrf_token": csrf_token(page), "upload_key": key.group(1),
                "file": (BytesIO(content), "solution.py")})

        first = post(REFERENCE_SOLUTION.read_bytes())
        assert first.status_code == 302
        for _ in range(2):
            again = post(REFERENCE_SOLUTION.read_bytes())
            assert again.status_code == 302 and again.headers["Location"] == first.headers["Location"]
        assert post(STARTER_SOLUTION.read_bytes()).status_code == 429
        assert counts() == (1, 1)


def test_an_upload_whose_web_process_died_before_answering_is_graded_once_when_sent_again_with_its_key(
        tmp_path: Path) -> None:
    """When the web process (gunicorn, as deployed) that stored an upload is SIGKILLed before it answers, so the
    client sees its connection drop, does the upload sent again with its Idempotency-Key get a 202 for that
    submission, and is it graded once, by a real worker? The dead process never sent the grading to the broker:
    the resend does, with no beat running here to sweep it up (without that, it waited for the sweep)."""
    with fresh_postgres_database() as database, running_stack(tmp_path, database) as stack:
        base_url, mark = _web_that_dies_after_storing(stack, tmp_path)
        headers = stack.world.student.headers | {"Idempotency-Key": str(uuid.uuid4())}

        def post() -> requests.Response:
            return requests.post(base_url + UPLOAD, headers=headers, timeout=60,
                                 files={"file": ("solution.py", REFERENCE_SOLUTION.read_bytes())})

        with pytest.raises(requests.ConnectionError):
            post()  # stored, then the process died: no answer
        assert mark.exists(), logs(stack)
        answer = _answered_again(post)
        assert answer.status_code == 202, answer.text
        _graded_once_by_a_worker(stack, answer.json()["id"])
        with stack.app.app_context():
            assert counts() == (1, 1)
            db.session.remove()


def test_an_lms_webhook_whose_web_process_died_after_storing_it_is_graded_once_when_the_lms_retries(
        tmp_path: Path) -> None:
    """When the web process (gunicorn) that stored an LMS webhook's submission is SIGKILLed before it answers, and
    the LMS sends the message again once that attempt counts as abandoned, is the retry answered with the submission
    the dead attempt stored (202, same id), graded once by a real worker, with no second submission? The dead
    process never sent the grading to the broker, and no beat runs here to sweep it up: the retry sends it."""
    from grader.lms import integrations
    from grader.models.lms import LmsWebhookReceipt

    with fresh_postgres_database() as database, running_stack(tmp_path, database) as stack:
        with stack.app.app_context():
            _, secrets = integrations.add_integration("canvas", "DEMO101")
            db.session.commit()
            db.session.remove()
        base_url, mark = _web_that_dies_after_storing(stack, tmp_path)
        body = submission_body(REFERENCE_SOLUTION.read_bytes())

        def post() -> requests.Response:
            # Each delivery is signed anew (a fresh timestamp), with the message's one webhook-id.
            headers = signed_headers(secrets.inbound or "", body, msg_id="msg_died_after_storing")
            return requests.post(base_url + "/api/v1/lms/canvas/submissions", data=body, headers=headers, timeout=60)

        with pytest.raises(requests.ConnectionError):
            post()  # stored, then the process died: no answer
        assert mark.exists(), logs(stack)
        with stack.app.app_context():
            # The LMS retries minutes later, after the unanswered attempt counts as abandoned (2 minutes): as if
            # that time had passed, every time stored so far moves 5 minutes back.
            for model, column in ((LmsWebhookReceipt, "received_at"), (Submission, "created_at"),
                                  (GradingRun, "queued_at")):
                moved = getattr(model, column) - literal(timedelta(minutes=5), Interval())
                db.session.execute(update(model).values({column: moved}))
            db.session.commit()
            stored = db.session.scalars(select(Submission.id)).all()
            db.session.remove()
        answer = _answered_again(post)
        assert answer.status_code == 202, answer.text
        assert [answer.json()["id"]] == stored, (answer.json(), stored)
        _graded_once_by_a_worker(stack, stored[0])
        with stack.app.app_context():
            assert counts() == (1, 1)
            db.session.remove()


def _answered_again(post: Callable[[], requests.Response]) -> requests.Response:
    """The answer to `post` sent again, as a client's retry does, until gunicorn's new worker process answers."""
    answers: list[requests.Response] = []

    def answered() -> bool:
        try:
            answers.append(post())
        except requests.ConnectionError:
            return False
        return True

    wait_for(answered, 60, "the web process answering again")
    return answers[-1]


def _graded_once_by_a_worker(stack: Stack, submission_id: int) -> None:
    """Wait (as the course's instructor sees it) for the submission's grading, then check it happened once."""
    watcher = Watcher(stack.app, stack.world.instructor.headers)
    watcher.add(submission_id)
    watcher.wait_all_graded(150)
    assert_graded_exactly_once(stack.app, [submission_id])


def _web_that_dies_after_storing(stack: Stack, tmp_path: Path) -> tuple[str, Path]:
    """Start a web process that SIGKILLs itself right after its first commit that stores a submission, and a
    worker; (its base URL, the file that records the kill)."""
    mark = tmp_path / "killed"
    pythonpath = os.pathsep.join(filter(None, [str(COMMIT_HOOKS), stack.env.get("PYTHONPATH")]))
    base_url = stack.web(PYTHONPATH=pythonpath, GRADER_TEST_DIE_AFTER_SUBMISSION=str(mark))
    stack.worker()
    return base_url, mark
