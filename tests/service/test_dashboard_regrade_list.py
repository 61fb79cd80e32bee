"""An assignment's regrades, listed: the newest few on its page, all of them on a page of their own a page at a
time, each row saying what the regrade was without loading its items. On each database (a keyset comparison)."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from grader.extensions import db
from grader.instructor import pages
from grader.models import Submission
from grader.models.regrades import RegradeItem
from grader.services import regrades as regrade
from tests.conftest import Factory, World
from tests.support.dashboard_support import follow, full, graded_submission, link, login
from tests.support.sql_support import loaded, served


@pytest.fixture
def app(app_on_each_database: Flask) -> Flask:
    """The app on each database we run on."""
    return app_on_each_database


@pytest.fixture
def graded(world: World) -> World:
    """Submissions 1 and 2, one of each student, graded: something to regrade."""
    for person in (world.student, world.student2):
        graded_submission(person, world.assignment, full(world.assignment))
    return world


def regrade_ids(page: str) -> list[int]:
    """The regrade ids a page's regrade table lists, in order."""
    return [int(n) for n in re.findall(r">Regrade (\d+)</a>", page)]


def many_regrades(world: World, count: int) -> list[int]:
    """`count` regrades of the assignment, each discarded by the next as starting one does; every third of one
    submission. Their ids, oldest first."""
    ids = []
    for i in range(count):
        target = db.session.get(Submission, 1) if i % 3 == 2 else None
        ids.append(regrade.start(world.assignment, world.instructor.user, target).id)
    return ids


def test_does_following_older_list_every_regrade_once_newest_first(
        client: FlaskClient, graded: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """With more regrades than the assignment page shows, does it link to the regrades page, and do that page's
    Older links list every regrade once, newest first, with a way back to the newest? (The assignment page listed
    its five newest, and an older regrade's preview was reached only by its URL.)"""
    monkeypatch.setattr(pages, "REGRADE_PAGE", 4)
    ids = many_regrades(graded, 9)
    login(client, graded.instructor)
    overview = client.get("/instructor/assignments/autograd").get_data(as_text=True)
    assert regrade_ids(overview) == ids[::-1][: pages.RECENT_REGRADES]
    shown = follow(client, link(overview, "All regrades of autograd"), "Older regrades")
    assert [regrade_ids(page) for page in shown] == [ids[::-1][:4], ids[::-1][4:8], ids[::-1][8:]]
    assert link(shown[0], "Newest regrades") is None
    assert regrade_ids(client.get(link(shown[2], "Newest regrades") or "").get_data(as_text=True)) == ids[::-1][:4]


def test_does_the_regrades_page_say_what_each_regrade_was_without_loading_its_items(
        client: FlaskClient, graded: World, factory: Factory) -> None:
    """Does each row say how many submissions it regraded (or which one, linked), who started it and how it ended
    (discarded by hand, or replaced by a newer regrade, linked), in as many statements for many regrades of many
    students as for one? (Each row loaded every item of its regrade to count them.)"""
    one = regrade.start(graded.assignment, graded.instructor.user, db.session.get(Submission, 2))
    regrade.discard(one, graded.instructor.user)
    everyone = regrade.start(graded.assignment, graded.instructor.user)
    login(client, graded.instructor)
    with loaded(RegradeItem) as items:
        response, few = served(client, "/instructor/assignments/autograd/regrades")
    assert response.status_code == 200 and not items
    page = response.get_data(as_text=True)
    assert regrade_ids(page) == [everyone.id, one.id]
    row = page[page.index(f">Regrade {everyone.id}<"):page.index(f">Regrade {one.id}<")]
    assert "2 submissions" in row and "waiting for your decision" in row and graded.instructor.email in row
    row = page[page.index(f">Regrade {one.id}<"):]
    assert '<a href="/instructor/submissions/2">submission 2</a>' in row and "discarded" in row
    assert "replaced by" not in row  # (discarded by hand)
    a = graded.assignment
    for i in range(12):
        graded_submission(factory.person(f"s{i}@example.edu", graded.course), a, full(a))
    later = many_regrades(graded, 6)
    response, more = served(client, "/instructor/assignments/autograd/regrades")
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and len(regrade_ids(page)) == 8
    assert len(more) == len(few), (few, more)
    row = page[page.index(f">Regrade {everyone.id}<"):page.index(f">Regrade {one.id}<")]
    assert f'replaced by <a href="/instructor/regrades/{later[0]}">regrade {later[0]}</a>' in row
    preview = client.get(f"/instructor/regrades/{everyone.id}").get_data(as_text=True)
    started = f"started by {graded.instructor.email} over the same submissions, replaced it"
    assert f">regrade {later[0]}</a>, {started}" in preview


@pytest.mark.parametrize("after", ["999", "%C2%B2", "-1", "x"])
def test_does_a_stale_or_edited_regrades_link_show_the_newest_page(
        client: FlaskClient, graded: World, after: str) -> None:
    """Is a cursor that is no regrade of this assignment (unknown, not a number, out of range) the newest page,
    with no link back to the page it is?"""
    ids = many_regrades(graded, 2)
    login(client, graded.instructor)
    response = client.get(f"/instructor/assignments/autograd/regrades?after={after}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert regrade_ids(page) == ids[::-1] and link(page, "Newest regrades") is None


@pytest.mark.parametrize("who", ["student", "other_instructor"])
def test_can_a_student_or_another_courses_instructor_list_the_regrades(
        client: FlaskClient, graded: World, who: str) -> None:
    """Can a student, or the instructor of another course, open the assignment's regrades page? (No: 403, with no
    regrade in it.)"""
    ids = many_regrades(graded, 1)
    login(client, getattr(graded, who))
    response = client.get("/instructor/assignments/autograd/regrades")
    assert response.status_code == 403 and f"Regrade {ids[0]}" not in response.get_data(as_text=True)
