"""The submissions list a page at a time: every submission once, in order, whatever is uploaded meanwhile."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from grader.extensions import db
from grader.models import Assignment, Submission
from grader.services.submissions import submit
from tests.conftest import Factory, World
from tests.support.dashboard_support import full, grade_run
from tests.support.sql_support import served

LIST = "/api/v1/assignments/autograd/submissions"


@pytest.fixture
def app(app_on_each_database: Flask) -> Flask:
    """The app on each database we run on (where a page ends is a comparison each makes its own way)."""
    return app_on_each_database


def make(world: World, person: Any, count: int) -> list[int]:
    """`count` submissions of `person`, stored as an upload stores them; their ids, oldest first."""
    return [submit(person.user, world.assignment, "solution.py", f"x = {i}\n".encode()).id for i in range(count)]


def walk(client: FlaskClient, url: str, headers: dict[str, str]) -> tuple[list[int], list[int]]:
    """Follow `next` from `url` to the last page: every id listed, in order, and each page's size."""
    ids: list[int] = []
    sizes: list[int] = []
    while url:
        response = client.get(url, headers=headers)
        assert response.status_code == 200, response.json
        ids += [doc["id"] for doc in response.json["submissions"]]
        sizes.append(len(response.json["submissions"]))
        url = response.json["next"]
    return ids, sizes


def test_does_following_next_list_every_submission_once_newest_first(client: FlaskClient, world: World) -> None:
    """Seven submissions, three to a page: pages of 3, 3 and 1, and together exactly the list in one page, newest
    first; submissions stored in the same instant keep their order (newest id first) across a page's edge."""
    ids = make(world, world.student, 4) + make(world, world.student2, 3)
    start = db.session.get(Submission, ids[0]).created_at
    for i, submission_id in enumerate(ids):  # a second apart, but the middle three at one instant
        db.session.get(Submission, submission_id).created_at = start + timedelta(seconds=3 if 2 <= i <= 4 else i)
    db.session.commit()
    whole = client.get(f"{LIST}?limit=500", headers=world.instructor.headers).json
    assert whole["next"] is None
    listed, sizes = walk(client, f"{LIST}?limit=3", world.instructor.headers)
    assert sizes == [3, 3, 1]
    assert listed == [doc["id"] for doc in whole["submissions"]]
    assert listed == [ids[6], ids[5], ids[4], ids[3], ids[2], ids[1], ids[0]]


def test_does_an_upload_between_pages_neither_repeat_nor_skip_a_submission(client: FlaskClient, world: World) -> None:
    """A page read, then a new upload: the next page goes on after the last row read (by position, not by an
    offset that the new row would shift), and the new submission heads the list read afresh."""
    ids = make(world, world.student, 5)
    first = client.get(f"{LIST}?limit=2", headers=world.student.headers).json
    [newer] = make(world, world.student, 1)
    rest, _ = walk(client, first["next"], world.student.headers)
    assert [doc["id"] for doc in first["submissions"]] + rest == ids[::-1]
    again = client.get(f"{LIST}?limit=2", headers=world.student.headers).json
    assert again["submissions"][0]["id"] == newer


def test_do_a_student_s_pages_hold_only_theirs_and_an_instructor_s_keep_the_filter(client: FlaskClient,
                                                                                  world: World) -> None:
    """A student pages through their own submissions only; an instructor's `?email=` stays in every `next`."""
    mine = make(world, world.student, 3)
    theirs = make(world, world.student2, 3)
    assert walk(client, f"{LIST}?limit=2", world.student.headers)[0] == mine[::-1]
    url = f"{LIST}?limit=2&email={world.student2.email}"
    assert walk(client, url, world.instructor.headers)[0] == theirs[::-1]
    page = client.get(url, headers=world.instructor.headers).json
    assert f"email={world.student2.email}" in page["next"] and "limit=2" in page["next"]


def test_is_a_bad_page_request_a_400_that_names_the_problem(client: FlaskClient, world: World,
                                                             factory: Factory) -> None:
    """A limit out of 1..500 or not a number, a cursor that is not a number, and a cursor that is no submission of
    this list (none at all, another student's for a student, another assignment's) are each refused with a 400;
    the last alike whichever, so that it tells no one whose a submission is."""
    [own] = make(world, world.student, 1)
    [other] = make(world, world.student2, 1)
    [outside] = make(world, world.student, 1)  # ... moved to another assignment (one pack, one assignment)
    elsewhere = Assignment(slug="elsewhere", course=factory.course("ELSE300"), content_hash="0" * 64)
    db.session.add(elsewhere)
    db.session.flush()
    db.session.get(Submission, outside).assignment_id = elsewhere.id
    db.session.commit()
    for query in ("limit=0", "limit=501", "limit=many", "after=first", "after=0"):
        response = client.get(f"{LIST}?{query}", headers=world.student.headers)
        assert response.status_code == 400 and response.json["error"] == "invalid_request", (query, response.json)
        assert ("limit" if "limit" in query else "after") in response.json["detail"], response.json
    for cursor in (99999, other, outside):
        response = client.get(f"{LIST}?after={cursor}", headers=world.student.headers)
        assert response.status_code == 400, (cursor, response.json)
        assert response.json == {"error": "bad_cursor", "detail": f"after={cursor} is not a submission of this "
                                                                  "list: start again without it"}
    assert client.get(f"{LIST}?after={own}", headers=world.student.headers).json == {"submissions": [], "next": None}
    assert client.get(f"{LIST}?after={other}", headers=world.instructor.headers).status_code == 200


def test_is_a_query_the_model_takes_read_as_the_model_reads_it(client: FlaskClient, world: World) -> None:
    """Are `limit=2.0`, `limit=+2`, `limit= 2 ` a page of 2 and `after=ID.0` the page after ID, as the query's model
    (and the OpenAPI document) accept them? (The view read the text again with int(): `5.0` was a 500.)"""
    ids = make(world, world.student, 3)
    for limit in ("2.0", "%2B2", "%202%20"):
        page = client.get(f"{LIST}?limit={limit}", headers=world.student.headers)
        assert page.status_code == 200, (limit, page.json)
        assert [doc["id"] for doc in page.json["submissions"]] == ids[:0:-1] and "limit=2" in page.json["next"]
    after = client.get(f"{LIST}?after={ids[-1]}.0", headers=world.student.headers)
    assert after.status_code == 200, after.json
    assert [doc["id"] for doc in after.json["submissions"]] == ids[-2::-1]
    refused = client.get(f"{LIST}?after=99999.0", headers=world.student.headers)
    assert refused.status_code == 400 and refused.json["detail"].startswith("after=99999 is not"), refused.json


def test_does_a_page_run_as_many_queries_for_forty_graded_submissions_as_for_four(
        client: FlaskClient, world: World) -> None:
    """Is the number of SQL statements of a list page independent of the rows on it, for the student and the
    instructor? (Each document looked up its runs, results and the student's extension on its own: 111 statements
    for a page of 100.)"""
    def graded(count: int) -> None:
        for i in range(count):
            submission = submit(world.student.user, world.assignment, "solution.py", f"x = {i}\n".encode())
            grade_run(submission.runs[0], full(world.assignment))

    graded(4)
    counts = {}
    for size in (4, 40):
        if size == 40:
            graded(36)
        for who in (world.student, world.instructor):
            response, statements = served(client, LIST, headers=who.headers)
            assert response.status_code == 200 and len(response.json["submissions"]) == size
            counts[size, who.email] = len(statements)
    assert counts[4, world.student.email] == counts[40, world.student.email], counts
    assert counts[4, world.instructor.email] == counts[40, world.instructor.email], counts
