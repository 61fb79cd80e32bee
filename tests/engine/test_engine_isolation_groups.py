"""One sandbox per submission, its isolation groups in order: visible tests, then after_due_date, then hidden.

What a test leaves in the sandbox (here: files in /tmp, /dev/shm and the work directory, each holding what the
test handed to the student) must reach only tests whose output the student sees no sooner than its own.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from worker.engine.grade import grade
from worker.engine.manifest import load_assignment
from worker.engine.result import GradeResult
from worker.engine.runners import make_runner

MANIFEST = """
id = "groups"
title = "Isolation groups"
files = ["solution.py"]
[limits]
test_timeout = 5
run_timeout = 90
[[deliverables]]
id = "a"
title = "Part A"
points = 3
[[deliverables]]
id = "b"
title = "Part B"
points = 1
"""

# In source order the less visible tests come first: only the judge's ordering puts the visible ones ahead.
TESTS_A = '''
import pytest
pytestmark = pytest.mark.deliverable("a")

@pytest.mark.visibility("hidden")
def test_hidden(student):
    student.see("HIDDEN-SECRET")
    student.reveal()

@pytest.mark.visibility("after_due_date")
def test_after_due_date(student):
    student.see("LATER-SECRET")
    student.reveal()

def test_visible_a(student):
    student.see("VISIBLE-A")
    student.reveal()
'''

TESTS_B = '''
import pytest
pytestmark = pytest.mark.deliverable("b")

def test_visible_b(student):
    student.reveal()
'''

SOLUTION = '''
import os
PLACES = ("/tmp", "/dev/shm", os.getcwd())

def see(secret):
    for place in PLACES:
        with open(os.path.join(place, "seen.txt"), "a") as f:
            f.write(secret + "\\n")

def reveal():
    seen = set()
    for place in PLACES:
        try:
            with open(os.path.join(place, "seen.txt")) as f:
                seen.update(f.read().split())
        except OSError:
            pass
    raise RuntimeError("seen: " + " ".join(sorted(seen)))
'''

# Run last among the collection hooks and undo the judge's order: the most visible tests now come last.
REVERSING_CONFTEST = '''
import pytest

@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    items.reverse()
'''


def grade_groups(tmp_path: Path, conftest: str | None = None) -> GradeResult:
    """Grade SOLUTION against the tests above (local runner, forked sandboxes, a cold judge)."""
    (tmp_path / "assignment.toml").write_text(MANIFEST)
    (tmp_path / "test_a.py").write_text(TESTS_A)
    (tmp_path / "test_b.py").write_text(TESTS_B)
    if conftest is not None:
        (tmp_path / "conftest.py").write_text(conftest)
    return grade(load_assignment(tmp_path), {"solution.py": textwrap.dedent(SOLUTION).encode()},
                 make_runner("local", sandbox="fork"))


def seen(result: GradeResult) -> dict[str, tuple[str, str]]:
    """{test name: (visibility, what its reveal() call said it had seen)}."""
    found = {}
    for test in (t for d in result.deliverables for t in d.tests):
        line = test.output.splitlines()[0] if test.output else ""
        found[test.name] = (test.visibility, line.partition("seen: ")[2] if "seen: " in line else line)
    return found


def test_one_sandbox_serves_every_group_and_nothing_reaches_a_more_visible_test(tmp_path: Path) -> None:
    """Does one sandbox serve the visible, after_due_date and hidden tests, with the files each left reaching only
    tests that are no more visible than it?"""
    result = grade_groups(tmp_path)
    found = seen(result)
    assert result.environment["sandboxes"] == 1, result.environment
    assert found["test_visible_a"] == ("visible", "VISIBLE-A"), found
    assert found["test_visible_b"] == ("visible", "VISIBLE-A"), found
    assert found["test_after_due_date"] == ("after_due_date", "LATER-SECRET VISIBLE-A"), found
    # The files do carry on: the hidden test, which runs last, sees every earlier test's.
    assert found["test_hidden"] == ("hidden", "HIDDEN-SECRET LATER-SECRET VISIBLE-A"), found


def test_a_more_visible_test_after_a_less_visible_one_gets_a_sandbox_of_its_own(tmp_path: Path) -> None:
    """Should something reorder the tests so that visible ones come after hidden ones, does each such turn start a
    sandbox that has seen none of the earlier calls?"""
    result = grade_groups(tmp_path, conftest=REVERSING_CONFTEST)
    found = seen(result)
    order = [t.name for d in result.deliverables for t in d.tests]
    assert set(order) == {"test_visible_a", "test_visible_b", "test_after_due_date", "test_hidden"}
    for name, (visibility, output) in found.items():
        if visibility == "visible":
            assert "SECRET" not in output, (name, output)
        elif visibility == "after_due_date":
            assert "HIDDEN-SECRET" not in output, (name, output)
    assert result.environment["sandboxes"] >= 2, result.environment
