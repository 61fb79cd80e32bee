"""Assignments as the service knows them: a copy of a manifest's facts, attached to a course, versioned."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, CheckConstraint, Float, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from grader.database import db
from grader.models.types import UTCDateTime, utcnow

if TYPE_CHECKING:
    from grader.models.accounts import Course

SCORE_POLICIES = ("latest", "best")


class Assignment(db.Model):
    """An assignment pack (`reference_tests/<slug>/assignment.toml`) used by one course.

    The manifest on disk is the truth; this row mirrors it (title, files, deliverables, GPU need, due date) so
    the web side never reads the pack. `content_hash` changes whenever the manifest or a test file changes, and
    `version` counts those changes, so each grading run records exactly which tests judged it.
    """

    __tablename__ = "assignment"
    __table_args__ = (
        CheckConstraint("gpu IN ('none', 'optional', 'required')", name="gpu"),
        CheckConstraint("score_policy IN ('latest', 'best')", name="score_policy"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("course.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(200), default="")
    files: Mapped[list[str]] = mapped_column(JSON, default=list)
    gpu: Mapped[str] = mapped_column(String(10), default="none")
    max_score: Mapped[float] = mapped_column(Float, default=0.0)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    content_hash: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(default=1)
    # Which submission of a student counts in the gradebook.
    score_policy: Mapped[str] = mapped_column(String(10), default="latest")
    # The course policy (`worker.engine.policy` spec): the manifest's copy, and this offering's override on
    # top of it (set from the dashboard, the API or the CLI; a key set to null clears the manifest's value).
    policy: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    policy_override: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    course: Mapped[Course] = relationship(back_populates="assignments")
    deliverables: Mapped[list[Deliverable]] = relationship(
        back_populates="assignment", order_by="Deliverable.position", cascade="all, delete-orphan"
    )

    @property
    def queue(self) -> str:
        """The Celery queue its submissions go to: only a GPU-requiring assignment needs a GPU host."""
        return "gpu" if self.gpu == "required" else "cpu"

    @property
    def active_deliverables(self) -> list[Deliverable]:
        """Deliverables the current manifest still has, in manifest order."""
        return [d for d in self.deliverables if d.active]

    @property
    def policy_spec(self) -> dict[str, Any]:
        """The offering's policy: the manifest's spec with the override on top."""
        merged = {**(self.policy or {}), **(self.policy_override or {})}
        return {key: value for key, value in merged.items() if value is not None}

    def summary(self) -> dict[str, Any]:
        """Public facts about the assignment (what an upload must look like, what is scored)."""
        return {
            "id": self.slug,
            "title": self.title,
            "course": self.course.code,
            "files": list(self.files),
            "max_score": self.max_score,
            "due": self.due_at.isoformat() if self.due_at else None,
            "version": self.version,
            "deliverables": [
                {"id": d.slug, "title": d.title, "max_score": d.points} for d in self.active_deliverables
            ],
        }

    def __repr__(self) -> str:
        return f"<Assignment {self.slug} v{self.version}>"


class Deliverable(db.Model):
    """A scored part of an assignment. Kept when a manifest drops it, since old scores point at it."""

    __tablename__ = "deliverable"
    __table_args__ = (UniqueConstraint("assignment_id", "slug"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignment.id", ondelete="CASCADE"), index=True)
    slug: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200), default="")
    points: Mapped[float] = mapped_column(Float, default=0.0)
    position: Mapped[int] = mapped_column(default=0)
    active: Mapped[bool] = mapped_column(default=True)

    assignment: Mapped[Assignment] = relationship(back_populates="deliverables")

    def __repr__(self) -> str:
        return f"<Deliverable {self.slug} {self.points}>"
