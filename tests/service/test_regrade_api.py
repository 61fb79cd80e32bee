"""Regrades through the API (`grader.api.regrades`): an instructor's script starts one, follows its progress and
preview, and publishes or discards it, with what the dashboard's regrade pages do; anything else is refused and
changes nothing."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from grader.extensions import db
from grader.models import Submission
from grader.models.regrades import Regrade
from grader.services.scores import gradebook
from grader.services.submissions import submit
from tests.conftest import Factory, World
from tests.support.dashboard_support import full, grade_run, graded_submission

START = "/api/v1/assignments/autograd/regrades"


@pytest.fixture
def graded(world: World) -> World:
    """student: 100; student2: 80 (no_grad 0)."""
    graded_submission(world.student, world.assignment, full(world.assignment))
    graded_submission(world.student2, world.assignment, full(world.assignment, no_grad=0))
    return world


def totals(world: World) -> dict[str, float | None]:
    """{email: counted total} from the service's gradebook, read afresh."""
    db.session.expire_all()
    return {row["email"]: row["score"] for row in gradebook(world.assignment)["students"]}


def finish(regrade_id: int, scores_by_email: dict[str, dict[str, float]]) -> None:
    """Grade every new run of the regrade as a worker would, with the given scores per student."""
    db.session.expire_all()
    regrade = db.session.get(Regrade, regrade_id)
    assert regrade is not None
    for item in regrade.items:
        grade_run(item.after_run, scores_by_email[item.submission.user.email])


def regrade_count() -> int:
    """Regrades in the database."""
    return int(db.session.scalar(select(func.count()).select_from(Regrade)) or 0)


def test_does_a_regrade_started_through_the_api_publish_only_once_graded(client: FlaskClient, graded: World) -> None:
    """Is a regrade of the whole assignment a 202 with where to follow it, refused publication while it grades,
    previewed before → after once graded, and do the new scores count only once it is published?"""
    headers = graded.instructor.headers
    started = client.post(START, json={}, headers=headers)
    assert started.status_code == 202, started.json
    doc = started.json
    assert started.headers["Location"] == doc["url"] and doc["url"].endswith(f"/api/v1/regrades/{doc['id']}")
    assert (doc["scope"], doc["state"], doc["submissions"], doc["submission"]) == ("assignment", "open", 2, None)
    assert doc["requested_by"] == graded.instructor.email and doc["decided_by"] is None
    assert doc["progress"] == {"queued": 2, "running": 0, "graded": 0, "error": 0, "total": 2, "finished": 0,
                               "done": False}
    assert {c["email"]: c["pending"] for c in doc["changes"]} == {graded.student.email: True,
                                                                  graded.student2.email: True}

    early = client.post(f"/api/v1/regrades/{doc['id']}/publish", headers=headers)
    assert early.status_code == 409 and early.json["error"] == "conflict"
    assert "still being regraded" in early.json["detail"]

    finish(doc["id"], {graded.student.email: full(graded.assignment, simple_gradients=10),
                       graded.student2.email: full(graded.assignment)})
    assert totals(graded) == {graded.student.email: 100, graded.student2.email: 80}  # nothing published yet
    preview = client.get(doc["url"], headers=headers).json
    assert preview["progress"]["done"] is True and preview["state"] == "open"
    assert preview["summary"] == {"students": 2, "up": 1, "down": 1, "other": 0, "pending": 0, "unchanged": 0}
    changes = {c["email"]: c for c in preview["changes"]}
    assert (changes[graded.student.email]["before"], changes[graded.student.email]["after"]) == (100, 90)
    assert changes[graded.student2.email]["delta"] == 20 and changes[graded.student2.email]["changed"] is True
    no_grad = next(d for d in graded.assignment.active_deliverables if d.slug == "no_grad")
    by_title = {d["title"]: (d["before"], d["after"]) for d in changes[graded.student2.email]["deliverables"]}
    assert by_title[no_grad.title] == (0, no_grad.points)

    published = client.post(f"/api/v1/regrades/{doc['id']}/publish", headers=headers)
    assert published.status_code == 200, published.json
    assert published.json["published"] == 2
    assert published.json["regrade"]["state"] == "published"
    assert published.json["regrade"]["decided_by"] == graded.instructor.email
    assert totals(graded) == {graded.student.email: 90, graded.student2.email: 100}
    for action in ("publish", "discard"):
        again = client.post(f"/api/v1/regrades/{doc['id']}/{action}", headers=headers)
        assert again.status_code == 409 and "already published" in again.json["detail"], again.json


def test_does_a_discarded_regrade_change_no_score(client: FlaskClient, graded: World) -> None:
    """Is a discarded regrade closed, with its new runs never counted?"""
    doc = client.post(START, json={}, headers=graded.instructor.headers).json
    finish(doc["id"], {graded.student.email: full(graded.assignment, simple_gradients=0),
                       graded.student2.email: full(graded.assignment)})
    discarded = client.post(f"/api/v1/regrades/{doc['id']}/discard", headers=graded.instructor.headers)
    assert discarded.status_code == 200 and discarded.json["state"] == "discarded"
    assert discarded.json["decided_by"] == graded.instructor.email and discarded.json["replaced_by"] is None
    assert totals(graded) == {graded.student.email: 100, graded.student2.email: 80}
    refused = client.post(f"/api/v1/regrades/{doc['id']}/publish", headers=graded.instructor.headers)
    assert refused.status_code == 409 and "already discarded" in refused.json["detail"]


def test_does_the_list_page_an_assignments_regrades_and_say_which_replaced_which(
        client: FlaskClient, graded: World) -> None:
    """Is a regrade of one submission listed with it, replaced by a later regrade of all (which it names), and
    does following `next` list every regrade once, newest first?"""
    headers = graded.instructor.headers
    one_id = db.session.scalars(select(Submission.id).where(Submission.user_id == graded.student.user.id)).one()
    first = client.post(START, json={"submission": one_id}, headers=headers).json
    assert (first["scope"], first["submission"], first["submissions"]) == ("submission", one_id, 1)
    second = client.post(START, json={"submission": None}, headers=headers).json  # null: all of them
    assert second["scope"] == "assignment" and second["submissions"] == 2
    third = client.post(START, json={}, headers=headers).json

    listed: list[dict[str, Any]] = []
    url: str | None = f"{START}?limit=2"
    while url:
        page = client.get(url, headers=headers)
        assert page.status_code == 200, page.json
        listed += page.json["regrades"]
        url = page.json["next"]
    assert [r["id"] for r in listed] == [third["id"], second["id"], first["id"]]
    by_id = {r["id"]: r for r in listed}
    assert by_id[first["id"]]["state"] == "discarded" and by_id[first["id"]]["replaced_by"] == second["id"]
    assert by_id[first["id"]]["submission"] == one_id and "progress" not in by_id[first["id"]]
    assert by_id[second["id"]]["replaced_by"] == third["id"] and by_id[third["id"]]["state"] == "open"


def test_does_following_next_show_every_student_of_a_preview_once(client: FlaskClient, graded: World,
                                                                   factory: Factory) -> None:
    """With more students than a page holds, does following `next` from the regrade's URL show each student once, in
    order of email (with addresses the database's collation may order otherwise), with the whole regrade's summary on
    every page; and does `changes=changed` page through only those whose scores change?"""
    headers = graded.instructor.headers
    # Five more students: "a-c" and "ab" sort one way by code point and the other way by some collations.
    extra = [factory.person(f"{name}@example.edu", graded.course) for name in ("ab", "a-c", "zed", "mia", "b_d")]
    for person in extra:
        graded_submission(person, graded.assignment, full(graded.assignment))
    doc = client.post(START, json={}, headers=headers).json
    emails = sorted([graded.student.email, graded.student2.email, *(p.email for p in extra)])
    lower = {"ab@example.edu", "zed@example.edu"}  # their new runs score less (student2 changes too, as ever)
    finish(doc["id"], {email: full(graded.assignment, simple_gradients=5) if email in lower else full(graded.assignment)
                       for email in emails})

    def follow(url: str | None) -> list[str]:
        seen: list[str] = []
        while url:
            page = client.get(url, headers=headers)
            assert page.status_code == 200, page.json
            assert page.json["summary"]["students"] == len(emails), page.json["summary"]
            assert len(page.json["changes"]) <= 2, page.json
            seen += [c["email"] for c in page.json["changes"]]
            url = page.json["next"]
        return seen

    assert follow(f"{doc['url']}?limit=2") == emails
    assert follow(f"{doc['url']}?changes=changed&limit=1") == sorted({*lower, graded.student2.email})
    whole = client.get(doc["url"], headers=headers).json  # the default page holds a course of this size
    assert [c["email"] for c in whole["changes"]] == emails and whole["next"] is None


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=two", "changes=some", "after="])
def test_is_a_bad_preview_query_a_400(client: FlaskClient, graded: World, query: str) -> None:
    """Is a page size out of range or not a number, an unknown filter or an empty `after` refused with a 400 that
    names the parameter?"""
    doc = client.post(START, json={}, headers=graded.instructor.headers).json
    refused = client.get(f"{doc['url']}?{query}", headers=graded.instructor.headers)
    assert refused.status_code == 400 and refused.json["error"] == "invalid_request", refused.json
    assert query.split("=")[0] in refused.json["detail"], refused.json


@pytest.mark.parametrize(("send", "status", "code"), [
    ({"data": {"submission": "1"}}, 400, "bad_regrade"),  # a form, not JSON: not "regrade everything"
    ({}, 400, "bad_regrade"),  # no body at all
    ({"json": []}, 400, "bad_regrade"),
    ({"json": {"submision": 1}}, 400, "bad_regrade"),  # a misspelt field is not "regrade everything"
    ({"json": {"submission": "first"}}, 400, "bad_regrade"),
    ({"json": {"submission": 0}}, 400, "bad_regrade"),
    ({"json": {"submission": 987654}}, 404, "not_found"),
])
def test_is_a_bad_regrade_request_a_4xx_that_starts_nothing(client: FlaskClient, graded: World,
                                                             send: dict[str, Any], status: int, code: str) -> None:
    """Is a body that is no JSON object, a misspelt or mistyped field, or an unknown submission refused with a
    reason, and no regrade started?"""
    response = client.post(START, headers=graded.instructor.headers, **send)
    assert response.status_code == status and response.json["error"] == code, response.json
    assert regrade_count() == 0


def test_is_a_regrade_of_what_cannot_be_regraded_yet_a_409(client: FlaskClient, world: World) -> None:
    """With nothing graded yet, or one submission still queued, is a regrade a 409 that says why?"""
    nothing = client.post(START, json={}, headers=world.instructor.headers)
    assert nothing.status_code == 409 and "no graded submissions" in nothing.json["detail"]
    queued = submit(world.student.user, world.assignment, "solution.py", b"def f():\n    return 1\n")
    busy = client.post(START, json={"submission": queued.id}, headers=world.instructor.headers)
    assert busy.status_code == 409 and "still being graded" in busy.json["detail"]
    assert regrade_count() == 0


def test_may_only_the_courses_instructors_use_regrades(client: FlaskClient, graded: World) -> None:
    """Are a student and another course's instructor refused (403) every regrade operation, an unknown regrade a
    404, and does none of it change the regrade?"""
    doc = client.post(START, json={}, headers=graded.instructor.headers).json
    for person in (graded.student, graded.other_instructor):
        assert client.post(START, json={}, headers=person.headers).status_code == 403
        assert client.get(START, headers=person.headers).status_code == 403
        assert client.get(doc["url"], headers=person.headers).status_code == 403
        for action in ("publish", "discard"):
            assert client.post(f"/api/v1/regrades/{doc['id']}/{action}", headers=person.headers).status_code == 403
    assert client.get(f"/api/v1/regrades/{doc['id'] + 1}", headers=graded.instructor.headers).status_code == 404
    assert client.post(START, json={}).status_code == 401
    assert regrade_count() == 1
    assert client.get(doc["url"], headers=graded.instructor.headers).json["state"] == "open"


def test_is_a_submission_of_another_courses_assignment_not_found(app: Flask, client: FlaskClient, graded: World,
                                                                  factory: Factory, tmp_path: Path) -> None:
    """Naming a submission of an assignment the caller's course does not hold: is it the 404 of an unknown one (its
    existence not said), with nothing regraded, on either assignment?"""
    packs = tmp_path / "packs"
    shutil.copytree(Path(app.config["GRADER_ASSIGNMENTS"]), packs)
    shutil.copytree(packs / "autograd", packs / "elsewhere")
    manifest = packs / "elsewhere" / "assignment.toml"
    manifest.write_text(manifest.read_text().replace('id = "autograd"', 'id = "elsewhere"', 1))
    app.config["GRADER_ASSIGNMENTS"] = str(packs)
    other = factory.assignment(graded.other_instructor.user.enrollments[0].course, "elsewhere")
    theirs = graded_submission(graded.outsider, other, full(other))
    refused = client.post(START, json={"submission": theirs.id}, headers=graded.instructor.headers)
    assert refused.status_code == 404 and refused.json["detail"] == f"no submission {theirs.id} of autograd"
    assert regrade_count() == 0
