"""Helpers for the dashboard tests: log in through the real form, and put graded submissions in the database
through the service's own recording path (the engine's result is made up, so these tests need no sandbox)."""

from __future__ import annotations

import html
import re
from typing import Any

from flask.testing import FlaskClient

from grader.models import Assignment, GradingRun, Submission
from grader.services import grading
from grader.services.submissions import submit
from worker.engine.result import DeliverableResult, GradeResult, TestResult

_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_from(html: str) -> str:
    """The CSRF token embedded in a page's form."""
    match = _CSRF.search(html)
    assert match, "the page has no CSRF token"
    return match.group(1)


def login(client: FlaskClient, person: Any) -> None:
    """Log in through the login form (CSRF token included), as a browser would."""
    page = client.get("/login").get_data(as_text=True)
    response = client.post("/login", data={"email": person.email, "password": person.password,
                                           "csrf_token": csrf_from(page)})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]


def post_form(client: FlaskClient, page_url: str, action: str, **data: str) -> Any:
    """Submit a form of `page_url` to `action` with the page's CSRF token."""
    token = csrf_from(client.get(page_url).get_data(as_text=True))
    return client.post(action, data={"csrf_token": token, **data})


def fake_result(assignment: Assignment, scores: dict[str, float], output: str = "") -> GradeResult:
    """An engine result with `scores` per deliverable: a visible test and a hidden 2-point test in each."""
    deliverables = []
    for d in assignment.active_deliverables:
        score = float(scores.get(d.slug, 0.0))
        visible_max, hidden_max = d.points - 2, 2.0
        visible = min(score, visible_max)
        hidden = score - visible
        tests = [
            TestResult(name=f"Does {d.slug} work?", status="passed" if visible == visible_max else "failed",
                       score=visible, max_score=visible_max, output=output or f"visible output of {d.slug}"),
            TestResult(name=f"Secret check of {d.slug}", status="passed" if hidden == hidden_max else "failed",
                       score=hidden, max_score=hidden_max, visibility="hidden",
                       output=f"SECRET hidden output of {d.slug}"),
        ]
        deliverables.append(DeliverableResult(id=d.slug, title=d.title, score=score, max_score=d.points,
                                              tests=tests))
    total = sum(d.score for d in deliverables)
    return GradeResult(assignment=assignment.slug, status="graded", score=total,
                       max_score=assignment.max_score, message=f"Scored {total}", execution_time=1.5,
                       deliverables=deliverables, runner="local")


def grade_run(run: GradingRun, scores: dict[str, float]) -> None:
    """Finish `run` as a worker would: claim it, then record a made-up result."""
    assert grading.claim(run, "celery@test-worker")
    grading.record_result(run, fake_result(run.submission.assignment, scores), {"runner": "local"})


SOURCE = "def derivative(f, x):\n    return 2 * x  # <b>not bold</b>\n"


def graded_submission(person: Any, assignment: Assignment, scores: dict[str, float],
                      source: str = SOURCE) -> Submission:
    """Upload through the service (stored, queued) and record a result with these deliverable scores."""
    submission = submit(person.user, assignment, "solution.py", source.encode())
    grade_run(submission.runs[0], scores)
    return submission


def full(assignment: Assignment, **overrides: float) -> dict[str, float]:
    """Every deliverable at its maximum, except the ones given."""
    return {d.slug: overrides.get(d.slug, d.points) for d in assignment.active_deliverables}


def link(page: str, words: str) -> str | None:
    """The href of the page's link whose text starts with these words, if any."""
    found = re.search(rf'<a href="([^"]+)">{words}', page)
    return html.unescape(found.group(1)) if found else None


def follow(client: FlaskClient, url: str | None, older: str, **kwargs: Any) -> list[str]:
    """The pages of a list from `url` on, following its link `older` ("Older submissions") to the last page; each
    must be a 200. `kwargs` go with each request (headers)."""
    pages = []
    while url:
        response = client.get(url, **kwargs)
        assert response.status_code == 200, url
        pages.append(response.get_data(as_text=True))
        url = link(pages[-1], older)
    return pages
