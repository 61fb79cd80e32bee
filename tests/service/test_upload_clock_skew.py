"""Whose clock decides whether an upload is late: web hosts under libfaketime, one two minutes ahead and one two
minutes behind the database's clock, taking uploads over HTTP on PostgreSQL (gunicorn, as production runs).

A deadline is one moment for every student, whichever web host takes their upload: the upload's lateness (and so
its credit), its cooldown and the run's queue time are the database server's clock, as liveness is.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from grader.extensions import db
from grader.services.policy import set_override
from tests.conftest import REFERENCE_SOLUTION, fresh_postgres_database
from tests.support.service_stack import Stack, logs, running_stack, skewed_clock


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """The stack on a fresh database of the shared PostgreSQL server."""
    with fresh_postgres_database() as database, running_stack(tmp_path, database) as running:
        yield running


def test_a_web_host_whose_clock_is_off_judges_lateness_by_the_database_clock(stack: Stack) -> None:
    """An upload a minute before the deadline through a web host whose clock runs two minutes ahead, and one a minute
    after it through a host two minutes behind: is the first on time at full credit and the second late at half,
    and is the wait a cooldown asks for the same from the host behind?"""
    ahead = stack.web("web-ahead", **skewed_clock("+120s"))
    behind = stack.web("web-behind", **skewed_clock("-120s"))
    assignment = stack.world.assignment
    outcomes = []
    for url, due in ((ahead, 60), (behind, -60)):
        when = (datetime.now(UTC) + timedelta(seconds=due)).isoformat()
        set_override(db.session.merge(assignment), {"due": when, "late_penalty_per_day": 50, "late_days": 1})
        response = requests.post(f"{url}/api/v1/assignments/autograd/submissions", headers=stack.world.student.headers,
                                 files={"file": ("solution.py", REFERENCE_SOLUTION.read_bytes())}, timeout=30)
        assert response.status_code == 202, (response.text, logs(stack))
        read = requests.get(requests.compat.urljoin(url, response.headers["Location"]),
                            headers=stack.world.student.headers, timeout=30)
        assert read.status_code == 200, read.text
        outcomes.append(read.json()["late"])
    on_time, late = outcomes
    assert (on_time["late"], on_time["credit"]) == (False, 100.0), on_time
    assert late["late"] and late["credit"] == 50.0 and 55 <= late["late_seconds"] <= 90, late

    # A cooldown's end is told as a wait, the same from every host: not two minutes longer from the one behind.
    set_override(db.session.merge(assignment), {"cooldown_minutes": 5})
    refused = requests.post(f"{behind}/api/v1/assignments/autograd/submissions", headers=stack.world.student.headers,
                            files={"file": ("solution.py", REFERENCE_SOLUTION.read_bytes())}, timeout=30)
    assert refused.status_code == 429 and refused.json()["error"] == "cooling_down", refused.text
    assert 240 < int(refused.headers["Retry-After"]) <= 300, refused.headers
