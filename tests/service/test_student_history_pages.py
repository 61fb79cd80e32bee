"""A student's history on their own pages (home, upload, result): a page of the newest at a time, links between
the pages, and the same few queries however many submissions there are."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from grader.services.queries import HISTORY_PAGE
from grader.services.submissions import submit
from tests.conftest import World
from tests.service.test_service_pages import log_in
from tests.support.dashboard_support import follow, full, grade_run, link
from tests.support.sql_support import served

PAGES = {"home": "/", "upload": "/assignments/autograd/upload", "result": "/submissions/{first}"}


def make(world: World, count: int, person: str = "student") -> list[int]:
    """`count` submissions of `person` to autograd, stored as an upload stores them; their ids, oldest first. Every
    other one graded, so the table shows scores as well as queued ones."""
    ids = []
    for i in range(count):
        submission = submit(getattr(world, person).user, world.assignment, "solution.py", f"x = {i}\n".encode())
        if i % 2:
            grade_run(submission.runs[0], full(world.assignment))
        ids.append(submission.id)
    return ids


def listed(page: str) -> list[int]:
    """The submission ids of the page's history table, in order."""
    table = page[page.index('id="history'):]
    return [int(n) for n in re.findall(r">Submission (\d+)</a>", table)]


@pytest.fixture
def app(app_on_each_database: Flask) -> Flask:
    """The app on each database we run on (the home page's latest-per-assignment is a window function)."""
    return app_on_each_database


@pytest.mark.parametrize("where", sorted(PAGES))
def test_does_following_older_show_every_submission_once_newest_first(
        app: Flask, client: FlaskClient, world: World, where: str) -> None:
    """With more submissions than a page holds, does each of the student's pages list the newest page, link to the
    older ones, and together list every submission once, newest first, with a way back to the newest?"""
    ids = make(world, HISTORY_PAGE + 4)
    log_in(client, world.student.email, world.student.password)
    pages = follow(client, PAGES[where].format(first=ids[0]), "Older submissions")
    assert [n for page in pages for n in listed(page)] == ids[::-1]
    assert [len(listed(page)) for page in pages] == [HISTORY_PAGE, 4]
    assert link(pages[0], "Newest submissions") is None
    back = link(pages[1], "Newest submissions")
    assert back is not None and "after=" not in back
    assert listed(client.get(back).get_data(as_text=True)) == ids[::-1][:HISTORY_PAGE]


def test_does_a_short_history_show_no_page_links(app: Flask, client: FlaskClient, world: World) -> None:
    """Is a history that fits one page shown whole, with neither link?"""
    ids = make(world, 3)
    log_in(client, world.student.email, world.student.password)
    page = client.get("/").get_data(as_text=True)
    assert listed(page) == ids[::-1]
    assert link(page, "Older submissions") is None and link(page, "Newest submissions") is None


@pytest.mark.parametrize("after", ["junk", "-1", "99999999999999999999999", "0", "²", "{theirs}"])
def test_is_a_stale_or_foreign_after_the_first_page_of_ones_own(
        app: Flask, client: FlaskClient, world: World, after: str) -> None:
    """Is ?after= that is not one of this list's submissions (junk, out of range, none, another student's) the first
    page of the student's own history, never an error or someone else's list, and without a link back to a newest
    page that it already is?"""
    ids = make(world, HISTORY_PAGE + 2)
    theirs = make(world, 2, "student2")
    log_in(client, world.student.email, world.student.password)
    value = after.format(theirs=theirs[0])
    for url in (f"/?after={value}", f"/assignments/autograd/upload?after={value}",
                f"/submissions/{ids[0]}?after={value}"):
        response = client.get(url)
        assert response.status_code == 200, url
        page = response.get_data(as_text=True)
        assert listed(page) == ids[::-1][:HISTORY_PAGE], url
        assert link(page, "Newest submissions") is None, url
        assert link(page, "Older submissions") is not None, url


def test_does_an_old_submissions_result_page_lead_to_its_own_row(app: Flask, client: FlaskClient,
                                                                 world: World) -> None:
    """Does the result page of a submission older than the newest page offer the page that starts with it, where
    its row is marked as this one, with a way back to the newest? (Its row was on some later page, unmarked.)"""
    ids = make(world, HISTORY_PAGE + 5)
    log_in(client, world.student.email, world.student.password)
    page = client.get(f"/submissions/{ids[2]}").get_data(as_text=True)
    assert listed(page) == ids[::-1][:HISTORY_PAGE]
    place = link(page, f"Show the list from submission {ids[2]}")
    assert place is not None
    there = client.get(place).get_data(as_text=True)
    assert listed(there) == ids[2::-1]
    assert f"Submission {ids[2]}</a> <small>(this one)</small>" in there
    assert link(there, "Newest submissions") == f"/submissions/{ids[2]}#history"
    assert link(there, "Show the list from") is None
    for shown in (ids[-1], ids[-HISTORY_PAGE]):  # on the newest page already: nothing to offer
        assert link(client.get(f"/submissions/{shown}").get_data(as_text=True), "Show the list from") is None


def test_does_the_home_page_card_show_each_assignments_latest(app: Flask, client: FlaskClient,
                                                              world: World) -> None:
    """Does the assignment's card link the student's newest submission, whatever page the history is on?"""
    ids = make(world, HISTORY_PAGE + 1)
    log_in(client, world.student.email, world.student.password)
    for url in ("/", f"/?after={ids[5]}"):
        assert f"see submission {ids[-1]}</a>" in client.get(url).get_data(as_text=True)


@pytest.mark.parametrize("where", sorted(PAGES))
def test_do_the_pages_run_as_many_queries_for_sixty_submissions_as_for_six(
        app: Flask, client: FlaskClient, world: World, where: str) -> None:
    """Is the number of SQL statements a page runs independent of how many submissions the student has? (Each row
    loaded its runs on its own: 400 submissions were 400 queries at every refresh of a waiting result page.)"""
    ids = make(world, 6)
    log_in(client, world.student.email, world.student.password)
    response, few = served(client, PAGES[where].format(first=ids[-1]))
    assert response.status_code == 200
    more = make(world, 54)
    response, many = served(client, PAGES[where].format(first=more[-1]))  # (a newest one: it waits for its score)
    assert response.status_code == 200
    assert len(many) == len(few), (len(few), len(many))
