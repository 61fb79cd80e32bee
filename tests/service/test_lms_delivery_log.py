"""The instructor's LMS delivery log: a page of the newest at a time, only one status where asked, links between the
pages, and the same few queries however many deliveries and attempts there are."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

from grader.extensions import db
from grader.lms import integrations
from grader.models import utcnow
from grader.models.lms import LmsDelivery, LmsDeliveryAttempt, LmsIntegration
from tests.conftest import World
from tests.support.dashboard_support import follow, link
from tests.support.sql_support import served

LOG = "/lms/canvas/deliveries"


@pytest.fixture
def app(app_on_each_database: Flask) -> Flask:
    """The app on each database we run on (the pages are a keyset comparison and a GROUP BY)."""
    return app_on_each_database


@pytest.fixture
def canvas(world: World) -> LmsIntegration:
    """An integration of the world's course (its outbound URL is never called here)."""
    return integrations.add_integration("canvas", world.course.code, "http://127.0.0.1:9/hook")[0]


def make(integration: LmsIntegration, statuses: list[str], attempts: int = 2) -> list[int]:
    """A delivery of each status, a second apart and each with `attempts` logged attempts, stored as the outbound
    task stores them; their ids, oldest first."""
    start = utcnow() - timedelta(hours=1)
    rows = []
    for i, status in enumerate(statuses):
        delivery = LmsDelivery(integration_id=integration.id, event_id=f"msg_{uuid.uuid4().hex}",
                               event_type="submission.graded", payload="{}", status=status, attempts=attempts,
                               created_at=start + timedelta(seconds=i))
        delivery.attempt_log = [LmsDeliveryAttempt(number=n + 1, status_code=500, error="", outcome="retry in 1 s")
                                for n in range(attempts)]
        rows.append(delivery)
    db.session.add_all(rows)
    db.session.commit()
    return [row.id for row in rows]


def listed(page: str) -> list[int]:
    """The delivery ids the page shows, in order."""
    return [int(n) for n in re.findall(r'id="delivery-(\d+)"', page)]


def test_does_following_older_show_every_delivery_once_newest_first(
        app: Flask, client: FlaskClient, world: World, canvas: LmsIntegration,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With more deliveries than a page holds, is the newest page shown first, and do the *Older* links together
    list every delivery once, newest first, each later page with a way back to the newest?"""
    monkeypatch.setattr("grader.lms.views.PAGE_SIZE", 5)
    ids = make(canvas, ["delivered"] * 12)
    pages = follow(client, LOG, "Older deliveries", headers=world.instructor.headers)
    assert [listed(page) for page in pages] == [ids[::-1][:5], ids[::-1][5:10], ids[::-1][10:]]
    assert link(pages[0], "Newest deliveries") is None
    assert all(link(page, "Newest deliveries") == LOG for page in pages[1:])


def test_does_a_status_show_only_its_deliveries_on_every_page(
        app: Flask, client: FlaskClient, world: World, canvas: LmsIntegration,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Does ?status=failed list only the failed deliveries, page after page, and does the page say how many of
    each status there are, with a link to each and back to all?"""
    monkeypatch.setattr("grader.lms.views.PAGE_SIZE", 3)
    ids = make(canvas, ["failed", "delivered"] * 4 + ["pending"])
    failed = [i for i, status in zip(ids, ["failed", "delivered"] * 4, strict=False) if status == "failed"]
    pages = follow(client, f"{LOG}?status=failed", "Older deliveries", headers=world.instructor.headers)
    assert [listed(page) for page in pages] == [failed[::-1][:3], failed[::-1][3:]]
    first = pages[0]
    assert '<strong aria-current="page">Failed (4)</strong>' in first
    assert link(first, r"All \(9\)") == LOG
    assert link(first, r"Delivered \(4\)") == f"{LOG}?status=delivered"
    assert link(first, r"Pending \(1\)") == f"{LOG}?status=pending"
    assert "Sending (" not in first  # a status no delivery has is not offered
    assert link(pages[1], "Newest deliveries") == f"{LOG}?status=failed"
    none = client.get(f"{LOG}?status=sending", headers=world.instructor.headers).get_data(as_text=True)
    assert listed(none) == [] and "No sending deliveries." in none


@pytest.mark.parametrize("query", ["status=bogus", "after=junk", "after=0", "after=²", "after=99999999999999999999",
                                   "after={other}", "after={other}&status=failed"])
def test_is_an_unknown_status_or_after_the_first_page_of_all(
        app: Flask, client: FlaskClient, world: World, canvas: LmsIntegration, query: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Is a ?status= that is none, or an ?after= that is not a delivery of this integration (junk, out of range,
    another integration's), the newest page, never an error or another list, and without a link back to a newest
    page that it already is?"""
    monkeypatch.setattr("grader.lms.views.PAGE_SIZE", 3)
    ids = make(canvas, ["failed"] * 4 + ["delivered"])
    other = integrations.add_integration("moodle", world.course.code, "http://127.0.0.1:9/hook")[0]
    theirs = make(other, ["failed"])
    url = f"{LOG}?{query.format(other=theirs[0])}"
    response = client.get(url, headers=world.instructor.headers)
    assert response.status_code == 200, url
    page = response.get_data(as_text=True)
    newest = ids[-2::-1] if "status=failed" in query else ids[::-1]
    assert listed(page) == newest[:3]
    assert link(page, "Newest deliveries") is None
    assert link(page, "Older deliveries") is not None


def test_does_older_hold_when_the_last_rows_status_changed_meanwhile(
        app: Flask, client: FlaskClient, world: World, canvas: LmsIntegration,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Paging through the pending deliveries, when the page's last one is delivered before *Older* is followed,
    does the next page still go on from where that one was, rather than start again from the newest?"""
    monkeypatch.setattr("grader.lms.views.PAGE_SIZE", 2)
    ids = make(canvas, ["pending"] * 5)
    first = client.get(f"{LOG}?status=pending", headers=world.instructor.headers).get_data(as_text=True)
    assert listed(first) == [ids[4], ids[3]]
    db.session.get(LmsDelivery, ids[3]).status = "delivered"
    db.session.commit()
    older = link(first, "Older deliveries")
    assert older is not None
    assert listed(client.get(older, headers=world.instructor.headers).get_data(as_text=True)) == [ids[2], ids[1]]


def test_does_the_log_run_as_many_queries_for_sixty_deliveries_as_for_six(
        app: Flask, client: FlaskClient, world: World, canvas: LmsIntegration) -> None:
    """Is the number of SQL statements the log runs independent of how many deliveries (and attempts) it shows?
    (Each delivery loaded its attempts on its own: a page of 100 was over 100 queries.)"""
    make(canvas, ["delivered", "failed"] * 3)
    response, few = served(client, LOG, headers=world.instructor.headers)
    assert response.status_code == 200
    make(canvas, ["delivered", "failed", "pending"] * 18, attempts=4)
    response, many = served(client, LOG, headers=world.instructor.headers)
    assert response.status_code == 200 and len(listed(response.get_data(as_text=True))) == 60
    assert len(many) == len(few), (len(few), len(many))


def test_may_only_the_courses_instructors_read_the_log(
        app: Flask, client: FlaskClient, world: World, canvas: LmsIntegration) -> None:
    """Is the log refused to a student of the course and to another course's instructor, whatever it is asked?"""
    make(canvas, ["failed"])
    for person in (world.student, world.other_instructor):
        for query in ("", "?status=failed", "?after=1"):
            assert client.get(f"{LOG}{query}", headers=person.headers).status_code == 403, (person.email, query)
