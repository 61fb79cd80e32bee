"""Regrades: grading submissions again (after the tests changed), publishing the new scores on confirmation.

A regrade owns one item per submission it re-runs. Each item points at the run that was published when the
regrade started (`before_run`) and at the new, unpublished run it queued (`after_run`). Nothing a student or
the gradebook sees changes until an instructor publishes the regrade; discarding it leaves the new runs
unpublished forever (kept, so the instructor can still look at what they said).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from grader.database import db
from grader.models.types import UTCDateTime, utcnow

if TYPE_CHECKING:
    from grader.models.accounts import User
    from grader.models.assignments import Assignment
    from grader.models.grading import GradingRun, Submission

REGRADE_SCOPES = ("assignment", "submission")
REGRADE_STATES = ("open", "published", "discarded")


class Regrade(db.Model):
    """One instructor-requested regrade of an assignment's submissions (all of them, or a single one).

    `state` is "open" until published or discarded; whether its runs are still grading is read from the runs.
    """

    __tablename__ = "regrade"
    __table_args__ = (
        CheckConstraint("scope IN ('assignment', 'submission')", name="scope"),
        CheckConstraint("state IN ('open', 'published', 'discarded')", name="state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignment.id", ondelete="CASCADE"), index=True)
    scope: Mapped[str] = mapped_column(String(20), default="assignment")
    state: Mapped[str] = mapped_column(String(20), default="open", index=True)
    # The assignment's version (tests) the new runs were queued against, shown beside the one before.
    from_version: Mapped[int | None]
    to_version: Mapped[int | None]
    # SET NULL: removing an instructor's account must not erase the record that scores changed.
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    # A discarded regrade's successor, when a regrade started over the same submissions discarded it.
    replaced_by_id: Mapped[int | None] = mapped_column(ForeignKey("regrade.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    assignment: Mapped[Assignment] = relationship()
    requested_by: Mapped[User | None] = relationship(foreign_keys=[requested_by_id])
    decided_by: Mapped[User | None] = relationship(foreign_keys=[decided_by_id])
    items: Mapped[list[RegradeItem]] = relationship(
        back_populates="regrade", order_by="RegradeItem.id", cascade="all, delete-orphan"
    )

    def __repr__(self) -> str:
        return f"<Regrade {self.id} {self.scope} {self.state}>"


class RegradeItem(db.Model):
    """One submission in a regrade: the run that counted before and the new run that may replace it."""

    __tablename__ = "regrade_item"
    # A submission appears once per regrade; its new run belongs to exactly one regrade.
    __table_args__ = (UniqueConstraint("regrade_id", "submission_id"), UniqueConstraint("after_run_id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    regrade_id: Mapped[int] = mapped_column(ForeignKey("regrade.id", ondelete="CASCADE"), index=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submission.id", ondelete="CASCADE"), index=True)
    before_run_id: Mapped[int | None] = mapped_column(ForeignKey("grading_run.id", ondelete="SET NULL"))
    after_run_id: Mapped[int] = mapped_column(ForeignKey("grading_run.id", ondelete="CASCADE"))

    regrade: Mapped[Regrade] = relationship(back_populates="items")
    submission: Mapped[Submission] = relationship()
    before_run: Mapped[GradingRun | None] = relationship(foreign_keys=[before_run_id])
    after_run: Mapped[GradingRun] = relationship(foreign_keys=[after_run_id])

    def __repr__(self) -> str:
        return f"<RegradeItem regrade={self.regrade_id} submission={self.submission_id}>"
