"""Manifests: which submitted file names an assignment may accept."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.engine.errors import AssignmentError
from worker.engine.manifest import SANDBOX_MODULES, load_assignment
from worker.engine.runners.base import SANDBOX_FILES

MANIFEST = """
id = "names"
files = [{files}]
[[deliverables]]
id = "a"
points = 1
"""


def _write(tmp_path: Path, files: str) -> Path:
    (tmp_path / "assignment.toml").write_text(MANIFEST.format(files=files))
    return tmp_path


@pytest.mark.parametrize("name", ["wire.py", "values.py", "zygote.py", "student_server.py"])
def test_a_file_named_like_a_sandbox_module_is_refused(tmp_path: Path, name: str) -> None:
    """Would a submitted file import as one of the sandbox's own modules (and so never be graded)? Refused."""
    with pytest.raises(AssignmentError, match="shadowed by the sandbox"):
        load_assignment(_write(tmp_path, f'"solution.py", "{name}"'))


def test_the_reserved_names_are_exactly_the_sandbox_modules() -> None:
    """Is every Python module copied into the sandbox reserved, and nothing else?"""
    assert {f.removesuffix(".py") for f in SANDBOX_FILES if f.endswith(".py")} == SANDBOX_MODULES


def test_ordinary_names_are_accepted(tmp_path: Path) -> None:
    """Do plain names such as solution.py and helpers.py still load?"""
    assert load_assignment(_write(tmp_path, '"solution.py", "helpers.py"')).files == ("solution.py", "helpers.py")
