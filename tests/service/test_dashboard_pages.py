"""The instructor pages through the real app: who may see them, and whether they show what the data says."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from grader.extensions import db
from grader.instructor import pages
from grader.instructor.highlight import pygments_css
from grader.models import GradingRun, Submission, User
from grader.services.scores import gradebook
from tests.conftest import World
from tests.support.dashboard_support import csrf_from, follow, full, graded_submission, link, login
from tests.support.sql_support import loaded, served

REPO = Path(__file__).resolve().parents[2]
PAGE = "/instructor/assignments/autograd"
CSV = "/instructor/assignments/autograd/gradebook.csv"


@pytest.fixture
def graded(world: World) -> World:
    """student: 100 then 91; student2: 80. The gradebook counts the latest by default."""
    a = world.assignment
    graded_submission(world.student, a, full(a))
    graded_submission(world.student, a, full(a, gradient_checking=11))
    graded_submission(world.student2, a, full(a, no_grad=0))
    return world


def test_anonymous_visitors_are_sent_to_login(client: FlaskClient, world: World) -> None:
    """Does an anonymous visitor get the login page (and JSON callers a 401) rather than any data?"""
    response = client.get("/instructor/assignments/autograd")
    assert response.status_code == 302 and "/login?next=" in response.location
    live = client.get("/instructor/assignments/autograd/live.json")
    assert live.status_code == 401


@pytest.mark.parametrize("who", ["student", "outsider"])
def test_students_cannot_open_the_dashboard(client: FlaskClient, world: World, who: str) -> None:
    """Can a student (of this course or another) open the dashboard or download the gradebook? (No: 403.)"""
    login(client, getattr(world, who))
    for url in ("/instructor/", PAGE, CSV):
        response = client.get(url)
        assert response.status_code == 403, url
        assert "instructors" in response.get_data(as_text=True)


def test_instructors_of_another_course_are_refused(client: FlaskClient, graded: World) -> None:
    """Can an instructor of another course see this course's assignment, CSV or submissions? (No.)"""
    login(client, graded.other_instructor)
    assert client.get("/instructor/assignments/autograd").status_code == 403
    assert client.get("/instructor/assignments/autograd/gradebook.csv").status_code == 403
    assert client.get("/instructor/courses/DEMO101").status_code == 403
    assert client.get("/instructor/submissions/1").status_code == 403
    index = client.get("/instructor/").get_data(as_text=True)
    assert "OTHER200" in index and "DEMO101" not in index


@pytest.mark.parametrize("who", ["student", "other_instructor"])
def test_an_instructor_s_home_page_links_what_they_teach_to_its_scores(
        client: FlaskClient, graded: World, who: str) -> None:
    """An instructor lands on "My assignments" when they log in (where they try their own assignment): does each
    assignment they teach link to its scores and submissions there, and for anyone else (a student of the course, an
    instructor of another one) none does?"""
    login(client, graded.instructor)
    home = client.get("/").get_data(as_text=True)
    assert 'data-teaches>You teach DEMO101: <a href="/instructor/assignments/autograd">' in home
    client.post("/logout", data={"csrf_token": csrf_from(home)})
    login(client, getattr(graded, who))
    home = client.get("/").get_data(as_text=True)
    assert "data-teaches" not in home
    assert ('id="a-autograd"' in home) == (who == "student")  # (the student sees the assignment, without the link)


def test_assignment_page_shows_counts_averages_histograms_and_table(client: FlaskClient, graded: World) -> None:
    """Does the assignment page show the status counts, mean/median, a titled histogram per deliverable and
    every student's counted scores?"""
    login(client, graded.instructor)
    html = client.get("/instructor/assignments/autograd").get_data(as_text=True)
    assert "<dt>Submissions</dt><dd>3</dd>" in html
    assert "<dt>Mean score</dt><dd>85.5</dd>" in html  # latest: 91 and 80
    assert "<dt>Median score</dt><dd>85.5</dd>" in html
    for d in graded.assignment.active_deliverables:
        assert f'id="hist-{d.slug}"' in html
        assert f"{d.title} (out of 20 points)</title>" in html
    assert 'id="hist-total"' in html
    assert "2 students: 1 with 80 to under 90 points, 1 with 90 to 100 points." in html
    assert "student@example.edu" in html and "student2@example.edu" in html
    assert "lms-student-1" in html


def test_table_sorts_and_searches_on_the_server(client: FlaskClient, graded: World) -> None:
    """Do ?sort= and ?q= order and filter the table without JavaScript?"""
    login(client, graded.instructor)
    html = client.get("/instructor/assignments/autograd?sort=total&dir=asc").get_data(as_text=True)
    body = html[html.index('id="students-table"'):]
    assert body.index("student2@example.edu") < body.index("student@example.edu")
    html = client.get("/instructor/assignments/autograd?sort=total&dir=desc").get_data(as_text=True)
    body = html[html.index('id="students-table"'):]
    assert body.index("student@example.edu") < body.index("student2@example.edu")
    assert 'aria-sort="descending"' in body
    html = client.get("/instructor/assignments/autograd?q=lms-student-2").get_data(as_text=True)
    body = html[html.index('id="students-table"'):]
    assert "student2@example.edu" in body and "student@example.edu</small>" not in body


def test_csv_export_matches_the_database(client: FlaskClient, graded: World, app: Flask) -> None:
    """Are the CSV's numbers exactly the gradebook's, with email and external id for the LMS to match on?"""
    login(client, graded.instructor)
    response = client.get("/instructor/assignments/autograd/gradebook.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert 'filename="DEMO101-autograd-gradebook.csv"' in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    book = gradebook(graded.assignment)
    assert [r["email"] for r in rows] == [s["email"] for s in book["students"]]
    for row, student in zip(rows, book["students"], strict=True):
        assert row["external_id"] == (student["external_id"] or "")
        assert float(row["total"]) == student["score"]
        for d in book["deliverables"]:
            assert float(row[d["id"]]) == student["deliverables"][d["id"]]
    assert {r["email"]: r["total"] for r in rows} == {"student2@example.edu": "80",
                                                      "student@example.edu": "91"}


def test_best_policy_changes_what_counts(client: FlaskClient, graded: World) -> None:
    """Does switching the assignment to "best" make the student's 100 count instead of the later 91?"""
    from tests.support.dashboard_support import post_form

    login(client, graded.instructor)
    response = post_form(client, PAGE, PAGE + "/policy", policy="best")
    assert response.status_code == 302
    rows = list(csv.DictReader(io.StringIO(client.get(CSV).get_data(as_text=True))))
    assert {r["email"]: r["total"] for r in rows}["student@example.edu"] == "100"
    bad = post_form(client, PAGE, PAGE + "/policy", policy="worst")
    assert bad.status_code == 400 and "choose one of" in bad.get_data(as_text=True)


def test_policy_form_needs_a_csrf_token(client: FlaskClient, graded: World) -> None:
    """Is a forged cross-site POST (no CSRF token) refused with a plain message?"""
    login(client, graded.instructor)
    response = client.post("/instructor/assignments/autograd/policy", data={"policy": "best"})
    assert response.status_code == 400
    assert graded.assignment.score_policy == "latest"


def test_submission_detail_shows_source_tests_timings_and_runner(client: FlaskClient, graded: World) -> None:
    """Does the instructor see highlighted, escaped source, every test (hidden ones too) with its output, and
    the run's facts?"""
    login(client, graded.instructor)
    html = client.get("/instructor/submissions/1").get_data(as_text=True)
    assert '<div class="highlight">' in html and '<span class="k">def</span>' in html
    assert "<b>not bold</b>" not in html and "&lt;b&gt;not bold&lt;/b&gt;" in html
    assert "SECRET hidden output of simple_gradients" in html
    assert "name and points only" in html
    assert "celery@test-worker" in html and "local" in html
    assert "Grading took</dt><dd>1.5 s" in html
    assert "Regrade this submission" in html


def test_students_see_hidden_tests_as_name_and_points_only(client: FlaskClient, graded: World) -> None:
    """Does the student's result page keep hidden tests' output away while showing totals and history?"""
    login(client, graded.student)
    html = client.get("/submissions/2").get_data(as_text=True)
    assert "SECRET" not in html
    assert "Secret check of simple_gradients" in html and "A hidden test: only its points are shown." in html
    assert "visible output of simple_gradients" in html
    assert '<p class="score-big">91 <small>/ 100 points</small></p>' in html
    assert "Submission 1</a>" in html and "(this one)" in html  # history of this assignment
    assert client.get("/submissions/3").status_code == 404  # another student's


def test_student_history_page_marks_the_counted_submission(client: FlaskClient, graded: World) -> None:
    """Does a student's history list every submission and say which one counts?"""
    login(client, graded.instructor)
    user_id = graded.student.user.id
    html = client.get(f"/instructor/assignments/autograd/students/{user_id}").get_data(as_text=True)
    assert "Submission 1</a>" in html and "Submission 2</a>" in html
    assert "from <a href=\"/instructor/submissions/2\">submission 2</a>" in html


def test_does_a_students_page_read_only_that_students_rows_however_big_the_course(
        client: FlaskClient, graded: World, factory: Any) -> None:
    """Does the page of one student read that student's rows only (it built the whole gradebook to find one row),
    and show the score the gradebook counts for them?"""
    for i in range(12):
        person = factory.person(f"s{i}@example.edu", graded.course)
        graded_submission(person, graded.assignment, full(graded.assignment))
    login(client, graded.instructor)
    user_id = graded.student.user.id
    with loaded(User) as users, loaded(GradingRun) as runs:
        response, _ = served(client, f"/instructor/assignments/autograd/students/{user_id}")
    assert response.status_code == 200
    assert {u.id for u in users} <= {user_id, graded.instructor.id}, [u.email for u in users]
    theirs = set(db.session.scalars(select(Submission.id).where(Submission.user_id == user_id)))
    assert runs and {r.submission_id for r in runs} <= theirs, [r.submission_id for r in runs]
    row = next(r for r in gradebook(graded.assignment)["students"] if r["email"] == graded.student.email)
    assert f"<strong>{row['score']:g} / 100</strong>" in response.get_data(as_text=True)


def listed(page: str) -> list[int]:
    """The submission ids of the instructor's page of a student, in order."""
    return [int(n) for n in re.findall(r">Submission (\d+)</a>", page[page.index('id="submissions"'):])]


def test_does_following_older_on_a_students_page_show_every_submission_once(
        client: FlaskClient, graded: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """With more submissions than the instructor's page of a student holds, do its Older links list every one of
    that student's submissions once, newest first, marking the counted one where it is, with the counted score
    and its link above every page? (The page listed them all at once: a student with hundreds made a page of
    hundreds.)"""
    monkeypatch.setattr(pages, "STUDENT_PAGE", 3)
    a = graded.assignment
    for points in (1, 3, 5, 7, 9):
        graded_submission(graded.student, a, full(a, gradient_checking=points))
    a.score_policy = "best"  # the counted one: submission 1 (100), on the last page
    db.session.commit()
    theirs = list(db.session.scalars(select(Submission.id).where(Submission.user_id == graded.student.id)
                                     .order_by(Submission.id.desc())))
    login(client, graded.instructor)
    shown = follow(client, f"/instructor/assignments/autograd/students/{graded.student.id}", "Older submissions")
    assert [n for page in shown for n in listed(page)] == theirs and [len(listed(page)) for page in shown] == [3, 3, 1]
    for page in shown:
        assert 'from <a href="/instructor/submissions/1">submission 1</a>' in page
    assert [page.count('<tr class="current">') for page in shown] == [0, 0, 1]
    assert link(shown[0], "Newest submissions") is None
    assert listed(client.get(link(shown[1], "Newest submissions") or "").get_data(as_text=True)) == theirs[:3]


def test_is_another_students_submission_as_a_cursor_the_newest_page(client: FlaskClient, graded: World) -> None:
    """Does `?after=` naming another student's submission show this student's newest page, with nothing of the
    other student's?"""
    login(client, graded.instructor)
    html = client.get(f"/instructor/assignments/autograd/students/{graded.student.id}?after=3").get_data(as_text=True)
    assert listed(html) == [2, 1] and link(html, "Newest submissions") is None


def test_live_endpoint_stamp_changes_when_grading_finishes(client: FlaskClient, world: World) -> None:
    """Does the live JSON report waiting work and change its stamp once a submission is graded?"""
    from grader.services.submissions import submit
    from tests.support.dashboard_support import grade_run

    login(client, world.instructor)
    submission = submit(world.student.user, world.assignment, "solution.py", b"x = 1\n")
    before = client.get("/instructor/assignments/autograd/live.json").get_json()
    assert before["counts"]["queued"] == 1 and before["busy"] is True
    assert before["queue"]["queued"] == 1
    grade_run(submission.runs[0], full(world.assignment))
    after = client.get("/instructor/assignments/autograd/live.json").get_json()
    assert after["counts"]["graded"] == 1 and after["busy"] is False
    assert after["stamp"] != before["stamp"] and after["mean"] == 100


def test_course_and_index_pages_summarise_assignments(client: FlaskClient, graded: World) -> None:
    """Do the dashboard's index and course pages list the assignment with its counts and mean?"""
    login(client, graded.instructor)
    for url in ("/instructor/", "/instructor/courses/DEMO101"):
        html = client.get(url).get_data(as_text=True)
        assert graded.assignment.title in html
        assert "85.5 / 100" in html
        assert "Workers online" in html


def test_upload_page_carries_the_servers_rules_for_the_browser_checks(client: FlaskClient, world: World,
                                                                      app: Flask) -> None:
    """Does the upload form tell the browser the same accepted names and size limit the server enforces?"""
    login(client, world.student)
    html = client.get("/assignments/autograd/upload").get_data(as_text=True)
    assert 'data-accept-names="solution.py"' in html
    assert f'data-max-bytes="{app.config["GRADER_MAX_UPLOAD_BYTES"]}"' in html
    assert '<label for="file">' in html and 'id="file"' in html


def test_vendored_pygments_css_is_current() -> None:
    """Is grader/static/pygments.css what the installed pygments generates (regenerate it if not)?"""
    shipped = (REPO / "grader" / "static" / "pygments.css").read_text()
    assert pygments_css() in shipped


def test_pages_load_no_third_party_assets(client: FlaskClient, graded: World) -> None:
    """Do the pages reference only this server's own scripts and styles (no CDN: campuses may be offline)?"""
    login(client, graded.instructor)
    for url in ("/instructor/assignments/autograd", "/instructor/submissions/1", "/", "/submissions/1"):
        html = client.get(url).get_data(as_text=True)
        assert "https://" not in html.replace("http://www.w3.org/2000/svg", "") or "cdn" not in html.lower()
        assert 'src="http' not in html and 'href="http' not in html


def test_unknown_things_get_plain_error_pages(client: FlaskClient, graded: World) -> None:
    """Does a wrong address give a page that says what is wrong in words, with a way back?"""
    login(client, graded.instructor)
    missing = client.get("/instructor/assignments/nope")
    html = missing.get_data(as_text=True)
    assert missing.status_code == 404
    assert "<h1>Not found</h1>" in html and "unknown assignment &#39;nope&#39;" in html and ">Home</a>" in html
    assert client.get("/instructor/submissions/1?run=9").status_code == 404
    # Not a run number (int() refuses this digit: it was a 500): the published run.
    assert client.get("/instructor/submissions/1?run=²").status_code == 200
    assert client.get("/instructor/regrades/99").status_code == 404


def test_queue_panel_names_a_queue_no_online_worker_takes(client: FlaskClient, world: World, app: Flask,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """When runs wait in the gpu queue and the only workers online take the cpu queue, or are paused, does the
    panel say that those runs are not being graded, how to start a worker that takes them, and why a paused
    worker takes nothing (the workers' answers stubbed here; tests/service/test_service_recovery.py asks real
    workers)?"""
    from grader.extensions import db
    from grader.services import queue
    from grader.services.queue import WorkerState
    from grader.services.submissions import submit

    login(client, world.instructor)
    for _ in range(2):
        submit(world.student.user, world.assignment, "solution.py", b"x = 1\n").runs[0].queue = "gpu"
    db.session.commit()
    states = [WorkerState("cpu-only@a", ("cpu",)), WorkerState("gpu@b", (), "its docker runner cannot grade: gone")]
    monkeypatch.setattr(queue, "worker_states", lambda **_: states)
    panel = " ".join(client.get("/instructor/assignments/autograd").get_data(as_text=True).split())
    assert "Workers online</dt><dd>2 (1 taking gradings)" in panel
    assert "No online worker takes gradings from the gpu queue now, so 2 waiting submissions are not" in panel
    assert "<code>gpu@b</code> takes no gradings until it can grade again: its docker runner cannot grade" in panel
    live = queue.queue_state([world.assignment.id]).to_dict()
    assert (live["taking"], live["untaken"]) == (1, ["gpu"])
    assert live["paused"] == [{"worker": "gpu@b", "why": "its docker runner cannot grade: gone"}]

    states[1] = WorkerState("gpu@b", ("gpu",))  # back: nothing is stranded
    panel = " ".join(client.get("/instructor/assignments/autograd").get_data(as_text=True).split())
    assert "Workers online</dt><dd>2</dd>" in panel and "No online worker" not in panel

    states[:] = [WorkerState("cpu-only@a", ("cpu",))]  # no worker ever took gpu: say how to start one
    panel = " ".join(client.get("/instructor/assignments/autograd").get_data(as_text=True).split())
    assert "start one with <code>grader worker --queues gpu</code>" in panel


def test_a_worker_that_does_not_know_the_state_command_counts_as_taking_every_queue() -> None:
    """Is a worker of another version (its answer is an error) shown online and taking gradings, never as one that
    strands the queue?"""
    from grader.services.queue import _worker_state

    other = _worker_state("old@a", {"error": "KeyError('grader_worker_state')"})
    assert other.paused is None and other.takes("gpu") and other.takes("cpu")
    paused = _worker_state("w@a", {"queues": [], "paused": "its docker runner cannot grade: x"})
    assert not paused.takes("cpu") and paused.paused == "its docker runner cannot grade: x"
