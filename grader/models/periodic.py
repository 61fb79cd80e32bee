"""When each of beat's periodic jobs last ran and last succeeded: the queue panel warns when the recovery sweeps
have stopped (no `grader beat` running, or every sweep failing), because nothing else would say so."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from grader.database import db
from grader.models.types import UTCDateTime


class PeriodicJob(db.Model):
    """One periodic job's last run, by the database server's clock (beat may run on any host)."""

    __tablename__ = "periodic_job"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    last_run_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_ok_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(500))
