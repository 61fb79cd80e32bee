"""Regrades: new scores are previewed before → after and reach students and the gradebook when published."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from grader.errors import Conflict, ServiceError
from grader.extensions import db
from grader.models import GradingRun, Submission
from grader.models.regrades import Regrade
from grader.services import regrades as regrade
from grader.services.scores import gradebook
from grader.signals import submission_graded
from tests.conftest import Factory, World
from tests.support.dashboard_support import (
    full,
    grade_run,
    graded_submission,
    login,
    post_form,
)
from tests.support.sql_support import served


@pytest.fixture
def graded(world: World) -> World:
    """student: 100; student2: 80 (no_grad 0)."""
    a = world.assignment
    graded_submission(world.student, a, full(a))
    graded_submission(world.student2, a, full(a, no_grad=0))
    return world


def totals(world: World) -> dict[str, float | None]:
    """{email: counted total} from the service's gradebook."""
    return {row["email"]: row["score"] for row in gradebook(world.assignment)["students"]}


def finish(r: Regrade, scores_by_email: dict[str, dict[str, float]]) -> None:
    """Grade every run of the regrade as a worker would, with the given scores per student."""
    for item in r.items:
        grade_run(item.after_run, scores_by_email[item.submission.user.email])


def test_regrade_all_queues_unpublished_runs_and_changes_nothing_yet(graded: World) -> None:
    """Does a regrade queue one new, unpublished run per finished submission, leaving scores untouched?"""
    r = regrade.start(graded.assignment, graded.instructor.user)
    assert r.scope == "assignment" and r.state == "open" and len(r.items) == 2
    for item in r.items:
        assert item.after_run.published is False and item.after_run.status == "queued"
        assert item.after_run.number == 2 and item.before_run is not None and item.before_run.number == 1
    finish(r, {"student@example.edu": full(graded.assignment, simple_gradients=10),
               "student2@example.edu": full(graded.assignment)})
    assert totals(graded) == {"student@example.edu": 100, "student2@example.edu": 80}
    assert all(s.status == "graded" for s in db.session.scalars(select(Submission)))


def test_preview_shows_before_and_after_per_student_and_deliverable(graded: World) -> None:
    """Does the preview give each student's total and each deliverable before → after?"""
    r = regrade.start(graded.assignment, graded.instructor.user)
    finish(r, {"student@example.edu": full(graded.assignment, simple_gradients=10),
               "student2@example.edu": full(graded.assignment)})
    changes = {c.user.email: c for c in regrade.preview(r)}
    down, up = changes["student@example.edu"], changes["student2@example.edu"]
    assert (down.before, down.after, down.delta) == (100, 90, -10)
    assert (up.before, up.after, up.delta) == (80, 100, 20)
    by_title = {title: (b, a) for title, b, a in up.deliverables}
    no_grad_title = next(d.title for d in graded.assignment.active_deliverables if d.slug == "no_grad")
    assert by_title[no_grad_title] == (0, 20)
    assert regrade.summary(list(changes.values()))["up"] == 1
    assert regrade.summary(list(changes.values()))["down"] == 1


def test_preview_before_column_equals_the_gradebook(graded: World) -> None:
    """Does the preview's "before" agree with the service's gradebook, under both policies?"""
    graded_submission(graded.student, graded.assignment, full(graded.assignment, no_grad=5))
    for policy in ("latest", "best"):
        graded.assignment.score_policy = policy
        db.session.commit()
        r = regrade.start(graded.assignment, graded.instructor.user)
        before = {c.user.email: c.before for c in regrade.preview(r)}
        assert before == totals(graded), policy


def test_publish_makes_new_scores_count_and_sends_the_graded_signal(graded: World, app: Flask) -> None:
    """After publishing, do the gradebook and the student see the new scores, with one published run each,
    and are LMS listeners told?"""
    r = regrade.start(graded.assignment, graded.instructor.user)
    finish(r, {"student@example.edu": full(graded.assignment, simple_gradients=10),
               "student2@example.edu": full(graded.assignment)})
    heard: list[dict] = []

    def listener(sender: Flask, **kwargs: object) -> None:
        """Record what the signal carried."""
        heard.append(kwargs)

    with submission_graded.connected_to(listener, sender=app):
        assert regrade.publish(r, graded.instructor.user) == 2
    assert totals(graded) == {"student@example.edu": 90, "student2@example.edu": 100}
    for submission in db.session.scalars(select(Submission)):
        assert [run.published for run in submission.runs] == [False, True]
        assert submission.published_run.number == 2
    assert sorted(h["submission_id"] for h in heard) == [1, 2]
    assert all(h["published"] is True and h["regrade_id"] == r.id for h in heard)
    assert r.state == "published" and r.decided_by_id == graded.instructor.user.id
    with pytest.raises(ServiceError):
        regrade.publish(r, graded.instructor.user)


def test_publishing_a_regrade_tells_the_lms_in_the_same_commit(graded: World) -> None:
    """Does publishing store a `submission.graded` delivery for each newly published run, committed with the
    publication (what another connection sees), and none for the unpublished regrade runs before?"""
    from grader.lms import integrations
    from grader.models.lms import LmsDelivery

    integrations.add_integration("canvas", "DEMO101", "http://127.0.0.1:9/hook")  # nothing listens on port 9
    r = regrade.start(graded.assignment, graded.instructor.user)
    finish(r, {"student@example.edu": full(graded.assignment, simple_gradients=10),
               "student2@example.edu": full(graded.assignment)})
    assert db.session.scalars(select(LmsDelivery)).all() == []  # an unpublished regrade is not the student's yet
    assert regrade.publish(r, graded.instructor.user) == 2
    with db.engine.connect() as other:
        rows = other.execute(select(LmsDelivery.run_id, LmsDelivery.event_type)).all()
    assert sorted(rows) == sorted((item.after_run_id, "submission.graded") for item in r.items)


def test_publishing_waits_until_every_run_finished(graded: World) -> None:
    """Is publishing refused (409) while some submissions are still being regraded?"""
    r = regrade.start(graded.assignment, graded.instructor.user)
    grade_run(r.items[0].after_run, full(graded.assignment))
    with pytest.raises(ServiceError) as refused:
        regrade.publish(r, graded.instructor.user)
    assert isinstance(refused.value, Conflict) and "still being regraded" in str(refused.value.detail)


def test_failed_regrade_runs_keep_the_old_score(graded: World) -> None:
    """When a regrade run ends in error, does that submission keep its published score after publishing?"""
    from grader.services import grading

    r = regrade.start(graded.assignment, graded.instructor.user)
    first, second = r.items
    grade_run(first.after_run, full(graded.assignment, simple_gradients=0))
    grading.record_error(second.after_run, "sandbox unavailable")
    assert regrade.publish(r, graded.instructor.user) == 1
    assert totals(graded) == {"student@example.edu": 80, "student2@example.edu": 80}
    assert second.submission.status == "graded" and second.after_run.published is False


def test_discard_leaves_every_score_as_it_was(graded: World) -> None:
    """Does discarding a finished regrade leave the gradebook and published runs untouched?"""
    r = regrade.start(graded.assignment, graded.instructor.user)
    finish(r, {"student@example.edu": full(graded.assignment, simple_gradients=0),
               "student2@example.edu": full(graded.assignment, simple_gradients=0)})
    regrade.discard(r, graded.instructor.user)
    assert totals(graded) == {"student@example.edu": 100, "student2@example.edu": 80}
    assert r.state == "discarded"
    assert db.session.scalar(select(GradingRun).where(GradingRun.number == 2)).published is False


def test_a_new_regrade_supersedes_an_open_one(graded: World) -> None:
    """Does a new regrade discard an open one over the same submissions (even over one of them), so only the
    newest can publish, and record which replaced it, where one discarded by hand names none?"""
    first = regrade.start(graded.assignment, graded.instructor.user)
    second = regrade.start(graded.assignment, graded.instructor.user)
    assert first.state == "discarded" and second.state == "open"
    assert first.replaced_by_id == second.id and second.replaced_by_id is None  # (the lists say so)
    assert [i.after_run.number for i in second.items] == [3, 3]
    published = regrade.start(graded.assignment, graded.instructor.user, db.session.get(Submission, 1))
    assert second.state == "discarded" and second.replaced_by_id == published.id
    regrade.discard(published, graded.instructor.user)
    assert published.state == "discarded" and published.replaced_by_id is None  # discarded by hand


def test_regrade_one_submission_and_refuse_one_still_grading(graded: World) -> None:
    """Can one submission be regraded alone, and is one still being graded refused with a plain reason?"""
    from grader.services.submissions import submit

    target = db.session.get(Submission, 1)
    r = regrade.start(graded.assignment, graded.instructor.user, target)
    assert r.scope == "submission" and [i.submission_id for i in r.items] == [1]
    waiting = submit(graded.student.user, graded.assignment, "solution.py", b"x = 1\n")
    with pytest.raises(ServiceError) as refused:
        regrade.start(graded.assignment, graded.instructor.user, waiting)
    assert "still being graded" in str(refused.value.detail)


def test_regrade_pages_preview_then_publish_on_confirm(client: FlaskClient, graded: World) -> None:
    """Through the pages: does "Regrade all" lead to a preview with before → after, and does only the
    confirming POST publish?"""
    login(client, graded.instructor)
    page_url = "/instructor/assignments/autograd"
    response = post_form(client, page_url, page_url + "/regrades")
    assert response.status_code == 302 and "/instructor/regrades/" in response.location
    page = response.location
    html = client.get(page).get_data(as_text=True)
    assert "Grading: 0 of 2 finished" in html and "disabled" in html
    assert "<strong>0</strong> stay the same,\n     <strong>2</strong> not regraded yet" in html
    live = client.get(page + "/live.json").get_json()
    assert live["busy"] is True and live["counts"]["queued"] == 2
    r = db.session.scalar(select(Regrade))
    finish(r, {"student@example.edu": full(graded.assignment),
               "student2@example.edu": full(graded.assignment)})
    html = client.get(page).get_data(as_text=True)
    assert "Ready: check the changes, then publish" in html
    assert "<s>80</s></span> → <strong>100</strong>" in html and "(+20)" in html
    assert totals(graded)["student2@example.edu"] == 80  # not yet
    published = post_form(client, page, page + "/publish")
    assert published.status_code == 302
    assert totals(graded)["student2@example.edu"] == 100
    follow = client.get(published.location).get_data(as_text=True)
    assert "Published 2 new scores" in follow


def test_does_a_regrade_page_run_as_many_queries_for_forty_students_as_for_four(
        client: FlaskClient, world: World, factory: Factory) -> None:
    """Are the preview and its progress poll a fixed number of SQL statements, whatever the regrade's size? (Each
    item loaded its submission and its new run on its own: 60 students were 270 statements a preview and 137 at
    every poll while the regrade ran.)"""
    login(client, world.instructor)
    a = world.assignment
    counts = []
    for size in (4, 40):
        for i in range(size):
            graded_submission(factory.person(f"s{size}-{i}@example.edu", world.course), a, full(a))
        r = regrade.start(a, world.instructor.user)
        for item in r.items[: len(r.items) // 2]:  # half graded (some changed), half still queued
            grade_run(item.after_run, full(a, no_grad=0))
        statements = []
        for url in (f"/instructor/regrades/{r.id}", f"/instructor/regrades/{r.id}/live.json"):
            response, ran = served(client, url)
            assert response.status_code == 200
            statements.append(len(ran))
        counts.append(statements)
        regrade.discard(r, world.instructor.user)
    assert counts[0] == counts[1], counts


def test_regrade_one_through_the_submission_page(client: FlaskClient, graded: World) -> None:
    """Does the submission page's "Regrade this submission" open a one-submission preview?"""
    login(client, graded.instructor)
    response = post_form(client, "/instructor/submissions/2", "/instructor/submissions/2/regrade")
    assert response.status_code == 302
    html = client.get(response.location).get_data(as_text=True)
    assert "One submission" in html and "student2@example.edu" in html
    again = client.get("/instructor/submissions/2").get_data(as_text=True)
    assert "See the open regrade of this submission" in again


def test_students_cannot_start_or_publish_regrades(client: FlaskClient, graded: World) -> None:
    """Can a student start a regrade or publish one? (No: 403, and nothing is created.)"""
    r = regrade.start(graded.assignment, graded.instructor.user)
    login(client, graded.student)
    token_page = client.get("/").get_data(as_text=True)
    from tests.support.dashboard_support import csrf_from

    token = csrf_from(token_page)
    start = client.post("/instructor/assignments/autograd/regrades", data={"csrf_token": token})
    assert start.status_code == 403
    assert client.post(f"/instructor/regrades/{r.id}/publish", data={"csrf_token": token}).status_code == 403
    assert db.session.scalar(select(Regrade).where(Regrade.id != r.id)) is None


def test_a_broken_pack_on_disk_refuses_the_regrade(graded: World, app: Flask, tmp_path: Path) -> None:
    """If the tests on disk are mid-edit and do not load, is the regrade refused with the reason, queueing
    nothing?"""
    broken = tmp_path / "packs"
    shutil.copytree(Path(app.config["GRADER_ASSIGNMENTS"]), broken)
    (broken / "autograd" / "assignment.toml").write_text("id = [unclosed")
    app.config["GRADER_ASSIGNMENTS"] = str(broken)
    with pytest.raises(ServiceError) as refused:
        regrade.start(graded.assignment, graded.instructor.user)
    assert isinstance(refused.value, Conflict) and "cannot be loaded" in str(refused.value.detail)
    assert db.session.scalar(select(Regrade)) is None
    assert db.session.scalar(select(GradingRun).where(GradingRun.number == 2)) is None
