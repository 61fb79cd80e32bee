"""Submissions and what grading them produced: runs, test results and deliverable scores."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, CheckConstraint, Float, ForeignKey, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from grader.database import db
from grader.models.types import UTCDateTime, utcnow

if TYPE_CHECKING:
    from grader.models.accounts import User
    from grader.models.assignments import Assignment, Deliverable

STATUSES = ("queued", "running", "graded", "error")
FINISHED = ("graded", "error")  # a run in one of these states is done: it will not change again
QUEUES = ("cpu", "gpu")
_STATUS_CHECK = "status IN ('queued', 'running', 'graded', 'error')"


class SubmissionFile(db.Model):
    """The bytes of an uploaded file, by sha256: the database is the store, so a worker on any host can read
    them with no shared folder. Identical uploads share one row."""

    __tablename__ = "submission_file"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int]
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Submission(db.Model):
    """One uploaded file. The bytes live in the content-addressed store under `sha256`; the name is only data.

    `status` follows the submission's published grading run: queued → running → graded (whatever the score)
    or error (grading could not happen; the student is not at fault).
    """

    __tablename__ = "submission"
    __table_args__ = (CheckConstraint(_STATUS_CHECK, name="status"), UniqueConstraint("user_id", "upload_key"))

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignment.id", ondelete="CASCADE"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    original_name: Mapped[str] = mapped_column(String(255))
    size: Mapped[int]
    status: Mapped[str] = mapped_column(String(10), default="queued", index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    # The lateness decision, taken at upload time by the server's clock and never recomputed, so a grade
    # that arrives after the deadline (a queue draining late) cannot make on-time work late.
    credit: Mapped[float] = mapped_column(Float, default=100.0)
    late_seconds: Mapped[int] = mapped_column(default=0)
    grace_days_used: Mapped[int] = mapped_column(default=0)
    # The client's Idempotency-Key (the API's header, the upload form's own): the same upload sent again with it,
    # after an answer that never arrived or a second click, gets this submission rather than a second one.
    upload_key: Mapped[str | None] = mapped_column(String(255))

    user: Mapped[User] = relationship()
    assignment: Mapped[Assignment] = relationship()
    runs: Mapped[list[GradingRun]] = relationship(
        back_populates="submission", order_by="GradingRun.number", cascade="all, delete-orphan"
    )

    @property
    def published_run(self) -> GradingRun | None:
        """The run whose result the student and the gradebook see (the newest published one)."""
        published = [run for run in self.runs if run.published]
        return published[-1] if published else None

    def __repr__(self) -> str:
        return f"<Submission {self.id} {self.status}>"


class GradingRun(db.Model):
    """One grading of a submission: number 1 at upload, higher numbers for regrades.

    A run is created with the submission (or by a regrade) before any task exists, so a task never creates
    one; `attempt` counts task deliveries that started it (retries, redeliveries). A regrade's run stays
    unpublished until an instructor publishes it.

    The row is the record, the task message only a doorbell (an outbox): `enqueued_at` is when a message was
    last handed to the broker (None: still to send, e.g. the broker was down), `not_before` holds a retry back
    until its time, and `heartbeat_at` is refreshed by the worker while it grades, so a run whose worker died
    is found within seconds and queued again (`grader.services.recovery`).
    """

    __tablename__ = "grading_run"
    __table_args__ = (
        UniqueConstraint("submission_id", "number"),
        CheckConstraint(_STATUS_CHECK, name="status"),
        CheckConstraint("queue IN ('cpu', 'gpu')", name="queue"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submission.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(default=1)
    published: Mapped[bool] = mapped_column(default=True)
    status: Mapped[str] = mapped_column(String(10), default="queued", index=True)
    queue: Mapped[str] = mapped_column(String(10), default="cpu")
    attempt: Mapped[int] = mapped_column(default=0)
    runner: Mapped[str | None] = mapped_column(String(32))
    image: Mapped[str | None] = mapped_column(String(255))
    worker: Mapped[str | None] = mapped_column(String(255))
    assignment_hash: Mapped[str | None] = mapped_column(String(64))
    assignment_version: Mapped[int | None]
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    execution_time: Mapped[float | None] = mapped_column(Float)
    score: Mapped[float | None] = mapped_column(Float)
    max_score: Mapped[float | None] = mapped_column(Float)
    message: Mapped[str] = mapped_column(Text, default="")
    # The engine's full result document (GradeResult.to_dict()), served reduced to students.
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    submission: Mapped[Submission] = relationship(back_populates="runs")
    test_results: Mapped[list[TestResult]] = relationship(
        back_populates="run", order_by="TestResult.position", cascade="all, delete-orphan"
    )
    scores: Mapped[list[DeliverableScore]] = relationship(back_populates="run", cascade="all, delete-orphan")

    @property
    def wait_time(self) -> float | None:
        """Seconds between queueing and the start of grading."""
        if self.started_at is None:
            return None
        return (self.started_at - self.queued_at).total_seconds()

    def __repr__(self) -> str:
        return f"<GradingRun {self.id} submission={self.submission_id} #{self.number} {self.status}>"


class TestResult(db.Model):
    """One reference test's verdict in one run (queryable copy of the result document's tests)."""

    __tablename__ = "test_result"
    __test__ = False  # not a pytest test class, despite the name

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("grading_run.id", ondelete="CASCADE"), index=True)
    deliverable_id: Mapped[int] = mapped_column(ForeignKey("deliverable.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(default=0)
    name: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(20))
    score: Mapped[float] = mapped_column(Float)
    max_score: Mapped[float] = mapped_column(Float)
    visibility: Mapped[str] = mapped_column(String(20), default="visible")
    output: Mapped[str] = mapped_column(Text, default="")

    run: Mapped[GradingRun] = relationship(back_populates="test_results")
    deliverable: Mapped[Deliverable] = relationship()


class DeliverableScore(db.Model):
    """A deliverable's score in one run. Unique per (run, deliverable): a redelivered task cannot add a second."""

    __tablename__ = "deliverable_score"
    __table_args__ = (UniqueConstraint("run_id", "deliverable_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("grading_run.id", ondelete="CASCADE"), index=True)
    deliverable_id: Mapped[int] = mapped_column(ForeignKey("deliverable.id", ondelete="CASCADE"), index=True)
    score: Mapped[float] = mapped_column(Float)
    max_score: Mapped[float] = mapped_column(Float)

    run: Mapped[GradingRun] = relationship(back_populates="scores")
    deliverable: Mapped[Deliverable] = relationship()
