"""The course policy in a real browser against the real service: the instructor sets a late penalty and gives
one student an extension from the dashboard; a late student sees the penalty on their graded result, and the
student with the extension sees their own due date."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import LiveService
from tests.browser.test_dashboard_browser import GRADING_TIMEOUT_MS, REFERENCE, Visitor, upload_by_picker

pytestmark = pytest.mark.timeout(600)


def local(when: datetime) -> str:
    """A value for a datetime-local field (the form reads it as UTC)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def test_a_student_sees_a_late_penalty_and_another_an_extension(browser: object, live_service: LiveService,
                                                                screenshots: object) -> None:
    """Does the late student's result say 90 % credit and 90 points counted, and does the student given an
    extension see it on the upload page, with uploads still open at full credit?"""
    teacher = Visitor(browser, live_service, screenshots, "instructor")  # type: ignore[arg-type]
    teacher.login()
    teacher.go("/instructor/assignments/autograd")
    now = datetime.now(UTC)
    teacher.page.get_by_label("Due", exact=True).fill(local(now - timedelta(hours=1)))
    teacher.page.get_by_label("Late penalty, % per day").fill("10")
    teacher.page.get_by_label("Late days").fill("3")
    teacher.page.get_by_role("button", name="Save the course policy").click()
    expect(teacher.page.get_by_text("The course policy is saved")).to_be_visible()
    teacher.page.get_by_label("Student's email").fill(live_service.logins["student2"][0])
    teacher.page.get_by_label("Extra days").fill("2")
    teacher.page.get_by_label("Reason (the student sees it)").fill("a doctor's note")
    teacher.page.get_by_role("button", name="Give the extension").click()
    expect(teacher.page.get_by_text("is now due")).to_be_visible()
    teacher.shot("policy-dashboard")
    teacher.close()

    late = Visitor(browser, live_service, screenshots, "student")  # type: ignore[arg-type]
    late.login()
    late.go("/assignments/autograd/upload")
    expect(late.page.locator("[data-late-now]")).to_contain_text("earns 90 % of its score")
    upload_by_picker(late, "solution.py", REFERENCE.read_bytes())
    late.page.get_by_role("button", name="Submit for grading").click()
    late.page.wait_for_url(re.compile(r".*/submissions/\d+$"))
    expect(late.page.locator("[data-late]")).to_contain_text("earns 90 % of its score",
                                                              timeout=GRADING_TIMEOUT_MS)
    expect(late.page.locator("[data-late]")).to_contain_text("90 points count")
    late.shot("policy-late-result")
    late.close()

    extended = Visitor(browser, live_service, screenshots, "student2")  # type: ignore[arg-type]
    extended.login()
    extended.go("/assignments/autograd/upload")
    panel = extended.page.locator("#standing")
    expect(panel).to_contain_text("You have an extension")
    expect(panel).to_contain_text("a doctor's note")
    expect(extended.page.locator("[data-late-now]")).to_have_count(0)
    extended.shot("policy-extension")
    extended.close()


def test_deadlines_are_typed_and_read_in_each_viewers_own_timezone(browser: object, live_service: LiveService,
                                                                    screenshots: object) -> None:
    """An instructor in New York types a due date of 23:59 their time: is it stored as 04:59 UTC the next day,
    shown back to them as 23:59 EST (UTC on hover), and shown to a student in Tokyo as 13:59 their time?"""
    teacher = Visitor(browser, live_service, screenshots, "instructor", timezone="America/New_York")  # type: ignore[arg-type]
    teacher.login()
    teacher.go("/instructor/assignments/autograd")
    expect(teacher.page.locator("#policy [data-zone]").first).to_have_text("America/New_York")
    teacher.page.get_by_label("Due", exact=True).fill("2027-01-15T23:59:00")
    teacher.page.get_by_role("button", name="Save the course policy").click()
    expect(teacher.page.get_by_text("The course policy is saved")).to_be_visible()
    due = teacher.page.locator("#policy dl dd").nth(1).locator("time")  # Opens, then Due
    expect(due).to_have_attribute("datetime", "2027-01-16T04:59:00+00:00")
    expect(due).to_have_text("2027-01-15 23:59 EST")
    expect(due).to_have_attribute("title", "2027-01-16 04:59 UTC")
    expect(teacher.page.get_by_label("Due", exact=True)).to_have_value(re.compile(r"^2027-01-15T23:59(:00)?$"))
    teacher.shot("policy-new-york")
    teacher.close()

    student = Visitor(browser, live_service, screenshots, "student", timezone="Asia/Tokyo")  # type: ignore[arg-type]
    student.login()
    student.go("/assignments/autograd/upload")
    expect(student.page.locator("#standing")).to_contain_text("Due 2027-01-16 13:59")
    student.close()
