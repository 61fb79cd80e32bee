"""The assignment pack's expected-score corpus, graded through the real engine on every path (forked sandbox on
both runners, fresh container), each with a warm judge as a worker holds it (`tests/support/corpus_paths.py`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.corpus_paths import PATHS, GradingPaths, grading_paths
from tests.support.expectations import expected_scores
from worker.engine.manifest import get_assignment

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "reference_tests" / "autograd" / "examples").glob("*.py"))


def test_corpus_is_large_enough() -> None:
    """Does the corpus hold the reference, the starter, broken files and every common mistake (14 or more)?"""
    names = {p.stem for p in EXAMPLES}
    assert len(EXAMPLES) >= 14
    assert {"reference", "starter", "syntax_error", "import_exception"} <= names


def test_every_example_declares_its_scores() -> None:
    """Does every example declare a score for each deliverable, within its points, on CPU and GPU alike?"""
    assignment = get_assignment("autograd")
    points = {d.id: d.points for d in assignment.deliverables}
    for example in EXAMPLES:
        for cuda in (False, True):
            expected = expected_scores(example, cuda=cuda)
            assert set(expected) == set(points), f"{example.name}: {sorted(expected)}"
            assert all(0 <= expected[d] <= points[d] for d in points), f"{example.name}: {expected}"


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_scores_as_declared(example: Path, path: str, paths: GradingPaths) -> None:
    """Does every example get exactly the per-deliverable score its header declares, on every path?"""
    assignment = get_assignment("autograd")
    result = paths[path].grade({"solution.py": example.read_bytes()})
    assert result.status == "graded", result.message
    expected = expected_scores(example, cuda=bool(result.environment.get("cuda")))
    assert set(expected) == {d.id for d in assignment.deliverables}
    got = result.scores_by_deliverable()
    failing = {
        d.id: [f"{t.name}: {t.status}: {t.output[:200]}" for t in d.tests if t.status != "passed"]
        for d in result.deliverables
        if got[d.id] != pytest.approx(expected[d.id])
    }
    assert got == pytest.approx(expected), f"{example.name}: expected {expected}, got {got}; {failing}"
    assert result.score == pytest.approx(sum(expected.values()))


@pytest.fixture(scope="module")
def paths(request: pytest.FixtureRequest) -> Iterator[GradingPaths]:
    """A runner and warm judge per path, made when first used (docker ones skipped where no engine answers)."""
    yield from grading_paths(request)
