"""The example corpus's copies of the reference and starter solutions are the real files, plus their header."""

from __future__ import annotations

import pytest

from tests.conftest import REPO

ASSIGNMENT = REPO / "reference_tests" / "autograd"


@pytest.mark.parametrize("name", ["reference", "starter"])
def test_corpus_copy_is_the_real_solution_under_its_expect_header(name: str) -> None:
    """Is examples/NAME.py exactly NAME/solution.py below its one `# expect:` line, so the corpus grades the
    files students and instructors really have (regenerate it with that header line plus the file)?"""
    copy = (ASSIGNMENT / "examples" / f"{name}.py").read_text()
    header, _, body = copy.partition("\n")
    assert header.startswith("# expect: ")
    assert body == (ASSIGNMENT / name / "solution.py").read_text()
