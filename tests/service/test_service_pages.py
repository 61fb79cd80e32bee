"""Student pages work without JavaScript: log in (CSRF-protected), upload, see the result."""

from __future__ import annotations

import re
from datetime import timedelta
from io import BytesIO

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from grader.extensions import db
from grader.models import Submission
from tests.conftest import REFERENCE_SOLUTION, World


def csrf_token(page: str) -> str:
    """The CSRF token of the first form on `page`."""
    found = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', page)
    assert found, "no CSRF token on the page"
    return found.group(1)


def log_in(client: FlaskClient, email: str, password: str) -> object:
    """Fill in and submit the login form."""
    token = csrf_token(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


def test_anonymous_visitor_is_sent_to_login(client: FlaskClient, world: World) -> None:
    """Is a visitor without a session redirected to the login page, remembering where they were going?"""
    response = client.get("/submissions/1")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=/submissions/1")


def test_login_form_requires_csrf_and_right_password(client: FlaskClient, world: World) -> None:
    """Is a login without a CSRF token refused, a wrong password told plainly, and a right one let in?"""
    forged = client.post("/login", data={"email": world.student.email, "password": world.student.password})
    assert forged.status_code in (200, 400)
    assert client.get("/api/v1/me").status_code == 401
    wrong = log_in(client, world.student.email, "not-the-password")
    assert "Wrong email or password" in wrong.get_data(as_text=True)
    assert client.get("/api/v1/me").status_code == 401
    right = log_in(client, world.student.email.upper(), world.student.password)
    assert right.status_code == 302
    assert client.get("/api/v1/me").json["email"] == world.student.email


def test_login_does_not_redirect_off_site(client: FlaskClient, world: World) -> None:
    """After login, is a `next` pointing at another site ignored (no open redirect)?"""
    token = csrf_token(client.get("/login").get_data(as_text=True))
    response = client.post("/login?next=//evil.example/x", data={
        "email": world.student.email, "password": world.student.password, "csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"] == "/"


def test_upload_page_stores_and_shows_the_submission(app: Flask, client: FlaskClient, world: World) -> None:
    """Can a logged-in student upload through the page and land on its status page?"""
    log_in(client, world.student.email, world.student.password)
    page = client.get("/assignments/autograd/upload")
    assert page.status_code == 200
    response = client.post("/assignments/autograd/upload", content_type="multipart/form-data", data={
        "csrf_token": csrf_token(page.get_data(as_text=True)),
        "file": (BytesIO(REFERENCE_SOLUTION.read_bytes()), "solution.py"),
    })
    assert response.status_code == 302, response.get_data(as_text=True)[-1500:]
    submission_id = db.session.scalar(select(Submission.id))
    assert response.headers["Location"] == f"/submissions/{submission_id}"
    status = client.get(f"/submissions/{submission_id}")
    assert status.status_code == 200 and "queued" in status.get_data(as_text=True)
    assert f"/submissions/{submission_id}" in client.get("/").get_data(as_text=True)


def test_refused_page_upload_explains_and_stores_nothing(app: Flask, client: FlaskClient, world: World) -> None:
    """Does a wrongly named file on the upload page get a plain message and store nothing?"""
    log_in(client, world.student.email, world.student.password)
    page = client.get("/assignments/autograd/upload").get_data(as_text=True)
    response = client.post("/assignments/autograd/upload", content_type="multipart/form-data", data={
        "csrf_token": csrf_token(page), "file": (BytesIO(b"x = 1\n"), "answer.py")})
    assert response.status_code == 422
    assert "accepts solution.py" in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(Submission)) == 0


def test_a_waiting_submission_says_grading_is_paused_while_no_worker_takes_its_queue(
        client: FlaskClient, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """While no online worker takes gradings from a queued submission's queue (the only one is paused, or none is
    online) and it has waited 20 s, do its status page and API document say that grading is paused and that it
    keeps its place, and stop saying so once a worker takes the queue, or once the submission runs (the workers'
    answers stubbed here; tests/browser/test_paused_grading_browser.py asks real workers)?"""
    from grader.services import queue
    from grader.services.queue import WorkerState
    from grader.services.submissions import GRADING_PAUSED_MESSAGE
    from tests.conftest import upload

    states = [WorkerState("w@a", ("cpu",), "its scratch folder /tmp cannot be written (No space left on device)")]
    monkeypatch.setattr(queue, "worker_states", lambda **_: states)
    submission_id = upload(client, "autograd", b"x = 1\n", headers=world.student.headers).json["id"]
    log_in(client, world.student.email, world.student.password)
    submission = db.session.get(Submission, submission_id)
    assert submission is not None and submission.published_run is not None
    run = submission.published_run

    def told() -> tuple[str | None, str]:
        """The API document's message, and the page's status panel with its white space collapsed."""
        doc = client.get(f"/api/v1/submissions/{submission_id}", headers=world.student.headers).json
        page = client.get(f"/submissions/{submission_id}").get_data(as_text=True)
        start = page.index('id="status"')
        return doc.get("message"), " ".join(page[start:page.index("</section>", start)].split())

    assert told()[0] is None  # sent just now: a wait of seconds needs no explanation (nor a reconnect's silence)
    run.enqueued_at = run.enqueued_at - timedelta(seconds=60)
    db.session.commit()
    message, panel = told()
    assert message == GRADING_PAUSED_MESSAGE
    assert f"<p data-status-message>{GRADING_PAUSED_MESSAGE}</p>" in panel
    assert "You are number 1 in the queue." in panel  # its place, kept
    assert "scratch folder" not in panel  # the why is for the instructor's panel

    states[:] = []  # no worker online at all
    assert told()[0] == GRADING_PAUSED_MESSAGE
    states[:] = [WorkerState("gpu@b", ("gpu",))]  # online, but it takes other gradings
    assert told()[0] == GRADING_PAUSED_MESSAGE

    states[:] = [WorkerState("w@a", ("cpu",))]  # back: nothing to say, and the script's element stays hidden
    message, panel = told()
    assert message is None and "<p data-status-message hidden></p>" in panel
    states[:] = [WorkerState("old@c", None)]  # a worker that does not say what it takes counts as taking it
    assert told()[0] is None

    submission.status = run.status = "running"
    db.session.commit()
    states[:] = []
    assert told()[0] is None  # running: a worker has it


def test_another_students_result_page_is_404(client: FlaskClient, world: World) -> None:
    """Can a student open another student's result page? (404)"""
    from tests.conftest import upload

    submission_id = upload(client, "autograd", b"x = 1\n", headers=world.student2.headers).json["id"]
    log_in(client, world.student.email, world.student.password)
    assert client.get(f"/submissions/{submission_id}").status_code == 404


def test_does_a_failed_import_say_why_once_and_each_test_that_it_did_not_run(client: FlaskClient,
                                                                              world: World) -> None:
    """A submission that could not be imported: do its page and the instructor's say why, with what the import
    printed, once at the top, and each test that did not pass only that it checked nothing, instead of the same message
    under every test; and does the API say it too?"""
    from grader.services import grading
    from grader.services.submissions import submit
    from tests.support.dashboard_support import fake_result

    submission = submit(world.student.user, world.assignment, "solution.py", b"import weights\n")
    why = ("solution.py could not be imported: the student process ended unexpectedly (exit code 3) while "
           "importing the submission\n--- your code printed ---\nloading the <weights>")
    result = fake_result(world.assignment, {}, output=why)
    result.message, result.import_failure = f"Your submission could not be run, so no test passed.\n{why}", why
    # A test that passed without the student's code (a check of the reference itself) says so as usual.
    checked = result.deliverables[0].tests[0]
    checked.status, checked.output = "passed", "the reference checked itself"
    assert grading.claim(submission.runs[0], "celery@test-worker")
    grading.record_result(submission.runs[0], result, {"runner": "local"})
    log_in(client, world.student.email, world.student.password)
    page = client.get(f"/submissions/{submission.id}").get_data(as_text=True)
    assert page.count("loading the &lt;weights&gt;") == 1, page  # once, and escaped
    assert page.count("could not be imported: the student process") == 1, page
    visible = sum(1 for d in result.deliverables for t in d.tests if t.visibility == "visible")
    assert page.count("data-not-run") == visible - 1 and "the reference checked itself" in page, page
    doc = client.get(f"/api/v1/submissions/{submission.id}", headers=world.student.headers).json
    assert doc["import_failure"] == why and doc["message"].endswith(why), doc
    log_in(client, world.instructor.email, world.instructor.password)
    page = client.get(f"/instructor/submissions/{submission.id}").get_data(as_text=True)
    assert page.count("loading the &lt;weights&gt;") == 1 and "data-import-failure" in page, page
    every = sum(len(d.tests) for d in result.deliverables)  # hidden tests too: the instructor sees them all
    assert page.count("data-not-run") == every - 1 and "the reference checked itself" in page, page


def test_logout_needs_a_post_with_csrf(client: FlaskClient, world: World) -> None:
    """Does logging out take a POST with the CSRF token (a link elsewhere cannot log you out)?"""
    log_in(client, world.student.email, world.student.password)
    assert client.get("/logout").status_code == 405
    assert client.post("/logout").status_code == 400
    assert client.get("/api/v1/me").status_code == 200
    token = csrf_token(client.get("/").get_data(as_text=True))
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/api/v1/me").status_code == 401


def test_are_the_page_filters_and_globals_app_wide_without_the_dashboard() -> None:
    """Does a template format scores and times through grader.templating alone, no dashboard blueprint?"""
    from flask import Flask, render_template_string

    from grader import templating

    app = Flask("bare")
    templating.init_app(app)
    with app.test_request_context():
        text = render_template_string("{{ 12.5|score }} {{ 90|duration }} {{ 2048|bytes }} {{ 'graded'|badge }}")
    assert text == '12.5 1 min 2 KB <span class="badge badge-graded">Graded</span>'
    assert "current_user" in app.jinja_env.globals and "is_instructor" in app.jinja_env.globals
