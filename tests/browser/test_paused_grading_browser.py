"""What a student's browser shows while grading is paused: the deployment's parts for real (PostgreSQL, a Redis of
the test's own, gunicorn serving the web app, `grader worker` processes), the only worker online taking the other
queue, and Debian's Chromium on the student's status page."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from grader.services.submissions import GRADING_PAUSED_MESSAGE
from tests.conftest import fresh_postgres_database
from tests.support.recovery_support import Watcher
from tests.support.service_stack import logs, running_stack

GRADING_TIMEOUT_MS = 180_000

pytestmark = pytest.mark.timeout(600)


def test_a_student_s_open_page_says_grading_is_paused_then_shows_the_score_when_a_worker_takes_it(
        tmp_path: Path, browser: Any) -> None:
    """While the only worker online takes gradings from the gpu queue alone, does the open status page of a
    student's waiting submission come to say, by its own polling and without a reload, that grading is paused and
    the submission keeps its place, and does the same page show the score once a worker that takes the cpu queue
    starts?"""
    with fresh_postgres_database() as database, running_stack(tmp_path, database) as stack:
        stack.worker("gpu-worker", queues="gpu")
        base_url = stack.web()
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(60_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
        page.on("console", lambda m: m.type == "error" and errors.append(f"console: {m.text}"))
        student = stack.world.student
        page.goto(base_url + "/login")
        page.get_by_label("Email").fill(student.email)
        page.get_by_label("Password").fill(student.password)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(re.compile(r".*/$"))

        [submission_id] = stack.upload(1, Watcher(stack.app, student.headers))
        page.goto(f"{base_url}/submissions/{submission_id}")
        page.evaluate("window.sameDocument = true")  # gone if the page reloads
        # Said once the submission has waited PAUSED_AFTER (20 s); and the web process asks the workers in the
        # background (a student's page never waits on the broker), so a later poll of the open page says it.
        note = page.locator("[data-status-message]")
        expect(note).to_be_hidden()
        expect(note).to_have_text(GRADING_PAUSED_MESSAGE, timeout=60_000)
        expect(page.locator("[data-status-text]")).to_contain_text("You are number 1 in the queue.")
        assert page.evaluate("window.sameDocument === true")  # the script's polling said it: no reload

        stack.worker("cpu-worker", queues="cpu")
        try:
            page.locator(".score-big").wait_for(timeout=GRADING_TIMEOUT_MS)
        except Exception as exc:
            raise AssertionError(logs(stack)) from exc
        assert page.locator(".score-big").inner_text().startswith("100")
        expect(note).to_be_hidden()  # graded: nothing left to explain
        context.close()
        assert errors == []
