"""The course policy on the pages: a refused upload is a plain message that stores nothing, the student sees
their dates, submissions left, a late penalty and an extension, and after-due-date points stay out of the
totals before the due date; the instructor sets the policy, extensions and grace days from the dashboard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import BytesIO
from typing import Any

from flask import Flask
from sqlalchemy import func, select

from grader.extensions import db
from grader.models import Submission
from grader.services.assignments import set_score_policy
from grader.services.policy import grant_extension, set_override
from tests.conftest import World
from tests.support.dashboard_support import csrf_from, full, grade_run, login, post_form

SOURCE = b"def f(x):\n    return x\n"


def at(**delta: float) -> str:
    """Now plus `delta`, ISO 8601 UTC."""
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


def page_upload(client: object, content: bytes = SOURCE) -> object:
    """Upload through the student's form (CSRF token included)."""
    page = client.get("/assignments/autograd/upload").get_data(as_text=True)  # type: ignore[attr-defined]
    return client.post("/assignments/autograd/upload", content_type="multipart/form-data",  # type: ignore[attr-defined]
                       data={"csrf_token": csrf_from(page), "file": (BytesIO(content), "solution.py")})


def test_an_upload_after_the_hard_close_shows_a_plain_message_and_stores_nothing(app: Flask, world: World) -> None:
    """Does the form answer a closed assignment with the page and a plain sentence, not a stack trace?"""
    set_override(world.assignment, {"due": at(hours=-2), "hard_close": at(hours=-1)})
    client = app.test_client()
    login(client, world.student)
    page = client.get("/assignments/autograd/upload").get_data(as_text=True)
    assert "Uploads close" in page and "closed on" in page
    response = page_upload(client)
    assert response.status_code == 403
    assert "this assignment closed on" in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(Submission)) == 0


def test_the_upload_page_says_how_many_submissions_are_left(app: Flask, world: World) -> None:
    """With a limit of 3 and one used, does the page say 2 of 3 are left?"""
    set_override(world.assignment, {"max_submissions": 3})
    client = app.test_client()
    login(client, world.student)
    assert page_upload(client).status_code == 302
    page = client.get("/assignments/autograd/upload").get_data(as_text=True)
    assert "data-submissions-left>2</strong> of 3 submissions left" in page


def test_an_assignment_with_no_due_date_or_limit_says_so_and_which_submission_counts(app: Flask, world: World) -> None:
    """With neither a due date nor a limit, does the student's panel say so and which submission counts, rather
    than stand empty under its heading; and with both, does it say them instead?"""
    client = app.test_client()
    login(client, world.student)
    page = client.get("/assignments/autograd/upload").get_data(as_text=True)
    assert world.assignment.due_at is None and world.assignment.score_policy == "latest"
    assert "data-no-due>No due date is set: no upload is late." in page
    assert "data-no-limit>No limit on how many times you upload." in page
    assert "data-counts>Your latest graded submission is the one that counts." in page
    set_override(world.assignment, {"due": at(days=2), "max_submissions": 3})
    set_score_policy(world.assignment, "best")
    page = client.get("/assignments/autograd/upload").get_data(as_text=True)
    assert "data-no-due" not in page and "data-no-limit" not in page
    assert "Due " in page and "data-submissions-left>3</strong> of 3" in page
    assert "data-counts>Your best graded submission is the one that counts." in page


def test_a_student_sees_the_late_penalty_and_the_counted_score(app: Flask, world: World) -> None:
    """A late upload at 80 %: does the result page say so, with 80 points counted of 100?"""
    set_override(world.assignment, {"due": at(hours=-30), "late_penalty_per_day": 10, "late_days": 3})
    client = app.test_client()
    login(client, world.student)
    assert "earns 80 % of its score" in client.get("/assignments/autograd/upload").get_data(as_text=True)
    response = page_upload(client)
    submission = db.session.scalar(select(Submission))
    grade_run(submission.runs[0], full(world.assignment))
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "earns 80 % of its score" in page and "<strong>80</strong> points count" in page


def test_a_student_with_an_extension_sees_their_own_due_date(app: Flask, world: World) -> None:
    """Does the student given an extension see 'You have an extension' with its reason, and the other not?"""
    set_override(world.assignment, {"due": at(hours=-1), "hard_close": at(hours=-1)})
    grant_extension(world.assignment, world.student.user, days=3, reason="a family emergency")
    client = app.test_client()
    login(client, world.student)
    page = client.get("/assignments/autograd/upload").get_data(as_text=True)
    assert "You have an extension" in page and "a family emergency" in page and "data-refusal" not in page
    other = app.test_client()
    login(other, world.student2)
    assert "You have an extension" not in other.get("/assignments/autograd/upload").get_data(as_text=True)


def graded_with_an_after_due_test(client: object, world: World) -> tuple[Submission, dict[str, Any]]:
    """The student's upload, graded in full, with its first deliverable's first test after_due_date (as a manifest
    would mark it); the submission and that test."""
    login(client, world.student)
    page_upload(client)
    submission = db.session.scalar(select(Submission))
    grade_run(submission.runs[0], full(world.assignment))
    run = submission.runs[0]
    result = dict(run.result)
    first = dict(result["deliverables"][0])
    first["tests"] = [{**first["tests"][0], "visibility": "after_due_date"}, *first["tests"][1:]]
    run.result = {**result, "deliverables": [first, *result["deliverables"][1:]]}
    db.session.commit()
    return submission, first["tests"][0]


def test_before_the_due_date_after_due_points_are_not_in_the_students_total(app: Flask, world: World) -> None:
    """With the pack's tests after_due_date and the due date ahead, does the page say "visible points"?"""
    set_override(world.assignment, {"due": at(days=2)})
    client = app.test_client()
    submission, later = graded_with_an_after_due_test(client, world)
    page = client.get(f"/submissions/{submission.id}").get_data(as_text=True)
    assert "data-hidden-note>Its result is shown after the due date.<" in page
    hidden_points = later["max_score"]
    assert "more is graded after the due date" in page
    assert f"{100 - hidden_points:g} of {100 - hidden_points:g} visible points" in page
    assert "visible output of simple_gradients" not in page


def test_with_no_due_date_an_after_due_test_says_only_its_points_are_shown(app: Flask, world: World) -> None:
    """With no due date there is no "after" to wait for (its points count, as a hidden test's do): does the
    student's page say so, rather than promise a result that no date will bring?"""
    client = app.test_client()
    submission, later = graded_with_an_after_due_test(client, world)
    assert world.assignment.due_at is None
    page = client.get(f"/submissions/{submission.id}").get_data(as_text=True)
    assert ("data-hidden-note>Its result is shown after the due date; none is set, so only its points are "
            "shown.<") in page
    assert f"{later['max_score']:g} possible" in page and "more is graded after the due date" not in page


def test_the_instructor_sets_the_policy_an_extension_and_grace_days_from_the_dashboard(
        app: Flask, world: World) -> None:
    """Do the dashboard's forms save the override, the extension and the grace days, and does a bad date or a
    number past its bound get a plain 4xx page that changes nothing?"""
    client = app.test_client()
    login(client, world.instructor)
    url = "/instructor/assignments/autograd"
    due = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    saved = post_form(client, url, url + "/course-policy", due=due, late_penalty_per_day="10", late_days="2",
                      max_submissions="5")
    assert saved.status_code == 302
    db.session.refresh(world.assignment)
    assert world.assignment.policy_override["max_submissions"] == 5
    assert world.assignment.due_at is not None
    granted = post_form(client, url, url + "/extensions", email=world.student.email, days="2", reason="ill")
    assert granted.status_code == 302
    assert post_form(client, url, url + "/grace-days", grace_days="3").status_code == 302
    page = client.get(url).get_data(as_text=True)
    assert world.student.email in page and "3 per student" in page
    bad = post_form(client, url, url + "/course-policy", due="tomorrow-ish")
    assert bad.status_code == 400 and "ISO 8601" in bad.get_data(as_text=True)
    # A late step per day: a billion of them would have held the request (and the worker serving it) for ever.
    huge = post_form(client, url, url + "/course-policy", due=due, late_penalty_per_day="10", late_days="1e9")
    assert huge.status_code == 400 and "late_days must be a whole number from 1 to 3,650" in huge.get_data(as_text=True)
    db.session.refresh(world.assignment)
    assert world.assignment.policy_override["late"] == [[86400, 90.0], [172800, 80.0]]


def test_does_the_instructors_page_of_a_student_say_where_they_stand(app: Flask, world: World) -> None:
    """On the instructor's page of a student: their own due date with the extension's reason, submissions used and
    left, and whether an upload from them now would be taken, in the instructor's words (the refusal the student
    reads says "you"); the student without an extension is refused as closed, at the limit as at the limit."""
    set_override(world.assignment, {"due": at(hours=-1), "hard_close": at(hours=-1), "max_submissions": 2})
    grant_extension(world.assignment, world.student.user, days=3, reason="a family emergency")
    student = app.test_client()
    login(student, world.student)
    for _ in range(2):
        assert page_upload(student).status_code == 302
    client = app.test_client()
    login(client, world.instructor)
    page = client.get(f"/instructor/assignments/autograd/students/{world.student.id}").get_data(as_text=True)
    assert "<strong>Extension:</strong> due" in page and "a family emergency" in page
    assert "Submissions: 2 of 2 used, 0 left." in page
    assert "would be refused:\n      they have used all their submissions." in page and "you have" not in page
    other = client.get(f"/instructor/assignments/autograd/students/{world.student2.id}").get_data(as_text=True)
    assert "(no extension)" in other and "Submissions: 0 of 2 used, 2 left." in other
    assert "would be refused:\n      the assignment has closed." in other
    own = client.get(f"/instructor/assignments/autograd/students/{world.instructor.id}").get_data(as_text=True)
    assert "Their deadlines and limits" not in own  # an instructor of the course has no standing to show


def test_does_the_instructors_page_of_a_student_say_an_upload_now_would_be_late(app: Flask, world: World) -> None:
    """After the due date, within the late days, does the instructor read that an upload from the student would
    be taken late, at the credit the student's own page states, with no limit on the count?"""
    set_override(world.assignment, {"due": at(hours=-30), "late_penalty_per_day": 10, "late_days": 3})
    client = app.test_client()
    login(client, world.instructor)
    page = client.get(f"/instructor/assignments/autograd/students/{world.student.id}").get_data(as_text=True)
    assert "An upload from them now would be taken, late: 80 % credit before grace days." in page
    assert "0 submissions so far (no limit)." in page


def test_does_an_extension_given_on_a_students_page_lead_back_to_it(app: Flask, world: World) -> None:
    """Does the extension form on the page of a student give that student the extension and come back to their page,
    and its revoke take it back the same way; and does a `back` that names no page (a URL) lead to the assignment's
    policy panel, never elsewhere?"""
    set_override(world.assignment, {"due": at(hours=-1)})
    client = app.test_client()
    login(client, world.instructor)
    page = f"/instructor/assignments/autograd/students/{world.student.id}"
    assert "Give them an extension" in client.get(page).get_data(as_text=True)
    extensions = "/instructor/assignments/autograd/extensions"
    granted = post_form(client, page, extensions, email=world.student.email, days="2", reason="a broken arm",
                        back="student")
    assert granted.status_code == 302 and granted.location.endswith(page + "#standing")
    shown = client.get(page).get_data(as_text=True)
    assert "<strong>Extension:</strong> due" in shown and "a broken arm" in shown and "Revoke their extension" in shown
    revoked = post_form(client, page, extensions + "/revoke", email=world.student.email, back="student")
    assert revoked.status_code == 302 and revoked.location.endswith(page + "#standing")
    assert "(no extension)" in client.get(page).get_data(as_text=True)
    elsewhere = post_form(client, page, extensions, email=world.student.email, days="1", back="https://evil.example")
    assert elsewhere.status_code == 302 and elsewhere.location.endswith("/instructor/assignments/autograd#policy")
