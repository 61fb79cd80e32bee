"""What an LMS is told when hosts' clocks disagree: a real `grader worker` and gunicorn web processes under
libfaketime, a loopback LTI platform that keeps the latest-stamped score (as AGS requires) and a webhook receiver,
on PostgreSQL.

LMSs order a student's grades by the times we send: AGS platforms ignore a score stamped before the one on
record, and webhook receivers drop an event whose `graded_at` is older than one they hold. Stamped by a worker
whose clock ran behind, a regrade reached the LMS and was thrown away, leaving the old grade there.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from grader.cli.lms import lms_group
from grader.extensions import db
from tests.conftest import REFERENCE_SOLUTION, REPO, fresh_postgres_database
from tests.support.lms_helpers import Receiver, signed_headers, submission_body, verified
from tests.support.lti_platform import LEARNER, Platform, PlatformUser, oidc_launch
from tests.support.recovery_support import Watcher
from tests.support.service_stack import COMMIT_HOOKS, Stack, logs, running_stack, skewed_clock, wait_for

BROKEN = REPO / "reference_tests" / "autograd" / "examples" / "simple_gradients_broken.py"  # scores 80
BOUND = 150  # seconds for a grading and its LMS traffic on a busy 2-core CI host


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """The stack on a fresh database of the shared PostgreSQL server."""
    with fresh_postgres_database() as database, running_stack(tmp_path, database) as running:
        yield running


def first_sent() -> bool:
    """Whether the first grade's LTI score and webhook delivery are recorded as sent (read afresh)."""
    from grader.models.lms import LmsDelivery, LtiScore

    db.session.remove()
    score = db.session.scalar(select(LtiScore.status).order_by(LtiScore.id).limit(1))
    delivery = db.session.scalar(select(LmsDelivery.status).order_by(LmsDelivery.id).limit(1))
    return score == "sent" and delivery == "delivered"


def test_a_better_grade_from_a_worker_whose_clock_runs_behind_replaces_the_lms_grade(stack: Stack) -> None:
    """When a student's first grade is published by a worker on time and their better second grade by a worker
    whose clock runs two minutes behind, does the LTI platform's gradebook end at the better grade (not ignore it as
    stamped before the first), and is the second webhook event's `graded_at` later than the first's?"""
    from grader.lms import integrations
    from grader.models.lms import LtiScore

    client = stack.app.test_client()
    with Platform() as platform, Receiver() as receiver:
        registered = stack.app.test_cli_runner().invoke(lms_group, platform.registration_args())
        assert registered.exit_code == 0, registered.output
        platform.tool_jwks = client.get("/lti/jwks").json
        student = stack.world.student
        platform.users["student"] = PlatformUser("sub-student-1", student.email, "A Student", [LEARNER])
        launched, _ = oidc_launch(client, platform, "student")  # linked to the stack's student by email
        assert launched.status_code == 200, launched.data
        _, secrets = integrations.add_integration("canvas", "DEMO101", receiver.url)
        db.session.commit()
        watcher = Watcher(stack.app, student.headers)

        on_time = stack.worker("worker-on-time")
        stack.upload(1, watcher, content=BROKEN.read_bytes())
        watcher.wait_all_graded(BOUND)
        # Until the worker has recorded both as sent, not only until the peers have them: stopped in between, it
        # leaves the score pending (sent again later, as a lost answer must be), which is not what this test asks.
        wait_for(lambda: platform.scores and receiver.received and first_sent(), BOUND, "the first grade's LMS traffic")
        on_time.stop()

        stack.worker("worker-behind", **skewed_clock("-120s"))
        stack.upload(1, watcher)
        watcher.wait_all_graded(BOUND)
        try:
            wait_for(lambda: len(platform.scores) == 2 and len(receiver.received) == 2, BOUND,
                     "the second grade's LMS traffic")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: scores {len(platform.scores)}, webhooks {len(receiver.received)}, "
                                 f"refused {platform.refused}\n{logs(stack)}") from None

    watcher.assert_truthful()
    posted = [score.body for score in platform.scores]
    assert [score["scoreGiven"] for score in posted] == [80.0, 100.0], logs(stack)
    assert platform.ignored == [], (posted, logs(stack))
    assert [score["scoreGiven"] for score in platform.gradebook.values()] == [100.0]
    first, second = (verified(request, secrets.outbound or "")["data"] for request in receiver.received)
    assert (first["score"], second["score"]) == (80.0, 100.0)
    assert datetime.fromisoformat(second["graded_at"]) > datetime.fromisoformat(first["graded_at"]), (first, second)
    db.session.remove()
    assert [row.status for row in db.session.scalars(select(LtiScore).order_by(LtiScore.id))] == ["sent", "sent"]


def test_a_webhook_retry_at_a_host_whose_clock_runs_ahead_waits_for_the_live_first_attempt(stack: Stack) -> None:
    """When an LMS retries a submission webhook while its first attempt is still being answered by a web host whose
    clock runs 90 s behind, and the retry reaches a host 90 s ahead, is the retry told 409 (in progress) rather
    than taking the live attempt over as abandoned, and does the one message make exactly one submission?"""
    from grader.lms import integrations
    from grader.models import Submission
    from grader.models.lms import LmsWebhookReceipt

    _, secrets = integrations.add_integration("canvas", "DEMO101")
    pythonpath = os.pathsep.join(filter(None, [str(COMMIT_HOOKS), stack.env.get("PYTHONPATH")]))
    behind = stack.web("web-behind", **skewed_clock("-90s"), PYTHONPATH=pythonpath,
                       GRADER_TEST_HOLD_AFTER_RECEIPT="8")
    ahead = stack.web("web-ahead", **skewed_clock("+90s"))
    body = submission_body(REFERENCE_SOLUTION.read_bytes())
    headers = signed_headers(secrets.inbound or "", body, msg_id="msg_retried_early")
    url = "/api/v1/lms/canvas/submissions"
    answers: dict[str, requests.Response] = {}
    first = threading.Thread(target=lambda: answers.update(
        first=requests.post(behind + url, data=body, headers=headers, timeout=60)))
    first.start()
    try:
        def owned() -> bool:
            db.session.remove()
            return bool(db.session.scalar(select(func.count()).select_from(LmsWebhookReceipt)))
        wait_for(owned, 30, "the first attempt owning the message")
        time.sleep(1.0)
        retry = requests.post(ahead + url, data=body, headers=headers, timeout=60)
    finally:
        first.join(60)
    assert retry.status_code == 409 and retry.json()["error"] == "in_progress", (retry.text, logs(stack))
    assert answers["first"].status_code == 202, (answers["first"].text, logs(stack))
    again = requests.post(ahead + url, data=body, headers=headers, timeout=60)
    assert again.status_code == 202 and again.json() == answers["first"].json(), again.text
    db.session.remove()
    assert db.session.scalar(select(func.count()).select_from(Submission)) == 1
