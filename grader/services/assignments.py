"""Keep assignment rows in step with the packs on disk (`reference_tests/<id>/assignment.toml`)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from flask import current_app
from sqlalchemy import select

from grader.database import db
from grader.errors import NotFound, ServiceError
from grader.models import SCORE_POLICIES, Assignment, Course, Deliverable
from worker.engine.manifest import Manifest, default_root, discover, get_assignment
from worker.engine.policy import from_spec


def assignments_root() -> Path:
    """The folder of assignment packs (GRADER_ASSIGNMENTS, else the engine's default)."""
    configured = current_app.config.get("GRADER_ASSIGNMENTS")
    return Path(configured) if configured else default_root()


def load_manifest(slug: str) -> Manifest:
    """The manifest of assignment `slug` from disk (UsageError naming the known ones if absent)."""
    return get_assignment(slug, assignments_root())


def attach(course: Course, slug: str) -> Assignment:
    """Create (or refresh) the row for pack `slug` in `course`; an assignment belongs to one course."""
    manifest = load_manifest(slug)
    assignment = db.session.scalar(select(Assignment).where(Assignment.slug == slug))
    if assignment is None:
        assignment = Assignment(slug=slug, course=course, content_hash=manifest.content_hash(), version=1)
        db.session.add(assignment)
    elif assignment.course_id != course.id:
        raise NotFound(f"assignment {slug!r} already belongs to course {assignment.course.code}")
    apply_manifest(assignment, manifest)
    return assignment


def apply_manifest(assignment: Assignment, manifest: Manifest) -> bool:
    """Copy the manifest's facts onto the row; bump `version` when the content hash changed. True if it did."""
    content_hash = manifest.content_hash()
    changed = assignment.content_hash != content_hash
    if changed:
        assignment.content_hash = content_hash
        assignment.version = (assignment.version or 0) + 1
    assignment.title = manifest.title
    assignment.files = list(manifest.files)
    assignment.gpu = manifest.gpu
    assignment.max_score = manifest.max_score
    assignment.policy = dict(manifest.policy)
    # The row's due date is the offering's: the manifest's unless the override moved it.
    assignment.due_at = effective_due(assignment)
    existing = {d.slug: d for d in assignment.deliverables}
    for position, item in enumerate(manifest.deliverables):
        row = existing.pop(item.id, None)
        if row is None:
            row = Deliverable(slug=item.id)
            assignment.deliverables.append(row)
        row.title, row.points, row.position, row.active = item.title, item.points, position, True
    for retired in existing.values():
        # Old scores still point at it: keep the row, hide it from new gradebooks.
        retired.active = False
    return changed


def effective_due(assignment: Assignment) -> datetime | None:
    """The offering's due date: the manifest's, or the override's when it sets one."""
    return from_spec(assignment.policy_spec).due


def sync_all() -> list[tuple[Assignment, bool]]:
    """Refresh every attached assignment from disk; (assignment, version changed) for each."""
    manifests = discover(assignments_root())
    synced = []
    for assignment in db.session.scalars(select(Assignment).order_by(Assignment.slug)):
        manifest = manifests.get(assignment.slug)
        if manifest is not None:
            synced.append((assignment, apply_manifest(assignment, manifest)))
    return synced


def all_assignments() -> list[Assignment]:
    """Every attached assignment, by slug."""
    return list(db.session.scalars(select(Assignment).order_by(Assignment.slug)))


def find_assignment(slug: str) -> Assignment:
    """The attached assignment `slug`, or NotFound."""
    assignment = db.session.scalar(select(Assignment).where(Assignment.slug == slug))
    if assignment is None:
        raise NotFound(f"unknown assignment {slug!r}")
    return assignment


def set_score_policy(assignment: Assignment, policy: str) -> None:
    """Choose which submission counts in the gradebook ("latest" or "best"), and save it."""
    if policy not in SCORE_POLICIES:
        raise ServiceError(f"choose one of: {', '.join(SCORE_POLICIES)}", code="bad_policy")
    assignment.score_policy = policy
    db.session.commit()
