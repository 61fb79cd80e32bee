"""Assignment manifests (`reference_tests/<id>/assignment.toml`): the only way the engine reads an assignment."""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from worker.engine.errors import AssignmentError, UsageError
from worker.engine.policy import given_time, named_zone, spec_from_manifest

VISIBILITIES = ("visible", "hidden", "after_due_date")
GPU_USES = ("none", "optional", "required")
# How often a test gets a fresh process forked from the post-import one: every test, or every deliverable (a
# test's process then serves the next test of its deliverable while it is as it started: see docs/judging.md).
FRESH_PROCESS = ("test", "deliverable")
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# The sandbox's own modules (worker/sandbox), imported before any submission: a submitted file of one of these
# names would import as ours, not as the student's (a test checks this list against the sandbox's files).
SANDBOX_MODULES = frozenset({"wire", "student_server", "values", "jail", "seccomp_filter", "zygote", "forkready",
                             "testprocs", "leftovers", "globalstate", "cpuuse", "calloutput",
                             "testsignals"})
_FILE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}\.py$")


@dataclass(frozen=True)
class Limits:
    """Resource limits for one grading run."""

    test_timeout: float = 10.0
    run_timeout: float = 120.0
    memory_mb: int = 1024
    cpus: float = 1.0
    pids: int = 64
    output_kb: int = 16


@dataclass(frozen=True)
class Deliverable:
    """A scored part of an assignment."""

    id: str
    title: str
    points: float


@dataclass(frozen=True)
class Manifest:
    """A loaded, validated assignment manifest."""

    id: str
    title: str
    path: Path
    files: tuple[str, ...]
    test_globs: tuple[str, ...]
    deliverables: tuple[Deliverable, ...]
    limits: Limits = field(default_factory=Limits)
    gpu: str = "none"
    visibility: str = "visible"
    fresh_process: str = "deliverable"
    due: datetime | None = None
    # The course policy's spec (`worker.engine.policy`): release, late steps, hard close, limits.
    policy: dict[str, Any] = field(default_factory=dict)

    @property
    def module(self) -> str:
        """Name under which the first accepted file is imported in the sandbox."""
        return self.files[0].removesuffix(".py")

    @property
    def max_score(self) -> float:
        """Total points of the assignment."""
        return float(sum(d.points for d in self.deliverables))

    def test_files(self) -> list[Path]:
        """The reference test files, sorted, found by the manifest's globs."""
        found: set[Path] = set()
        for pattern in self.test_globs:
            found.update(p for p in self.path.glob(pattern) if p.is_file())
        return sorted(found)

    def content_hash(self) -> str:
        """sha256 over the manifest and every test file: a new hash means the tests changed."""
        digest = hashlib.sha256()
        for file in [self.path / "assignment.toml", *self.test_files(), *self._support_files()]:
            digest.update(file.relative_to(self.path).as_posix().encode() + b"\0")
            digest.update(file.read_bytes() + b"\0")
        return digest.hexdigest()

    def _support_files(self) -> list[Path]:
        conftest = self.path / "conftest.py"
        return [conftest] if conftest.is_file() else []

    def deliverable(self, deliverable_id: str) -> Deliverable | None:
        """The deliverable with this id, if any."""
        return next((d for d in self.deliverables if d.id == deliverable_id), None)

    def check_file_name(self, name: str) -> str:
        """Return `name` if the assignment accepts a file of that name, else raise UsageError."""
        if name not in self.files:
            accepted = ", ".join(self.files)
            raise UsageError(f"{self.id} accepts {accepted}, not {name!r}")
        return name


def default_root() -> Path:
    """Folder holding one sub-folder per assignment (`GRADER_ASSIGNMENTS`, else the repo's reference_tests)."""
    env = os.environ.get("GRADER_ASSIGNMENTS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "reference_tests"


def load_assignment(path: Path) -> Manifest:
    """Read and validate `path/assignment.toml`; raise AssignmentError with a plain reason."""
    manifest = path / "assignment.toml"
    try:
        data = tomllib.loads(manifest.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise AssignmentError(f"{manifest}: missing") from exc
    except tomllib.TOMLDecodeError as exc:
        raise AssignmentError(f"{manifest}: {exc}") from exc
    try:
        return _parse(path.resolve(), data)
    except (KeyError, TypeError, ValueError) as exc:
        raise AssignmentError(f"{manifest}: {exc}") from exc


def _parse(path: Path, data: dict) -> Manifest:
    assignment_id = str(data["id"])
    if not _ID_RE.match(assignment_id):
        raise ValueError(f"bad id {assignment_id!r}")
    files = tuple(str(f) for f in data.get("files", ["solution.py"]))
    if not files or not all(_FILE_RE.match(f) for f in files):
        raise ValueError(f"files must be plain .py names, got {files!r}")
    taken = sorted(f for f in files if f.removesuffix(".py") in SANDBOX_MODULES)
    if taken:
        raise ValueError(f"files {taken} would be shadowed by the sandbox's own modules of that name")
    deliverables = tuple(
        Deliverable(id=str(d["id"]), title=str(d.get("title", d["id"])), points=float(d["points"]))
        for d in data["deliverables"]
    )
    ids = [d.id for d in deliverables]
    if not deliverables or len(set(ids)) != len(ids):
        raise ValueError("deliverables must be non-empty with unique ids")
    raw_limits = data.get("limits", {})
    known = set(Limits.__dataclass_fields__)
    unknown = set(raw_limits) - known
    if unknown:
        raise ValueError(f"unknown limits {sorted(unknown)}")
    limits = Limits(**{k: type(getattr(Limits(), k))(v) for k, v in raw_limits.items()})
    gpu = str(data.get("gpu", {}).get("use", "none"))
    if gpu not in GPU_USES:
        raise ValueError(f"gpu.use must be one of {GPU_USES}")
    visibility = str(data.get("visibility", "visible"))
    if visibility not in VISIBILITIES:
        raise ValueError(f"visibility must be one of {VISIBILITIES}")
    fresh_process = str(data.get("fresh_process", "deliverable"))
    if fresh_process not in FRESH_PROCESS:
        raise ValueError(f"fresh_process must be one of {FRESH_PROCESS}")
    raw_policy = data.get("policy", {})
    if not isinstance(raw_policy, dict):
        raise ValueError("[policy] must be a table")
    # A due date without an offset is in the policy's timezone (UTC unless it names one).
    try:
        zone = named_zone(raw_policy.get("timezone"))
        due = given_time(data["due"], zone) if data.get("due") is not None else None
        policy = spec_from_manifest(raw_policy, due)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"policy: {exc}") from exc
    return Manifest(
        id=assignment_id,
        title=str(data.get("title", assignment_id)),
        path=path,
        files=files,
        test_globs=tuple(data.get("tests", ["test_*.py"])),
        deliverables=deliverables,
        limits=limits,
        gpu=gpu,
        visibility=visibility,
        fresh_process=fresh_process,
        due=due,
        policy=policy,
    )


def discover(root: Path | None = None) -> dict[str, Manifest]:
    """Every assignment under `root`, by id (folders without a manifest are ignored)."""
    root = root or default_root()
    found: dict[str, Manifest] = {}
    for manifest in sorted(root.glob("*/assignment.toml")):
        assignment = load_assignment(manifest.parent)
        if assignment.id in found:
            raise AssignmentError(f"assignment id {assignment.id!r} is used twice under {root}")
        found[assignment.id] = assignment
    return found


def get_assignment(assignment_id: str, root: Path | None = None) -> Manifest:
    """The assignment with this id, or UsageError naming the ones that exist."""
    assignments = discover(root)
    if assignment_id not in assignments:
        known = ", ".join(sorted(assignments)) or "none"
        raise UsageError(f"unknown assignment {assignment_id!r} (known: {known})")
    return assignments[assignment_id]
