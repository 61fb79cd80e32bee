"""Column types shared by the models."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, DateTime, func, select
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session, scoped_session
from sqlalchemy.types import TypeDecorator

# The largest id any of our databases can hold (PostgreSQL BIGINT, SQLite INTEGER: signed 64-bit). URL
# converters and the OpenAPI document bound ids by it, so a larger one is a 404, never a driver overflow.
MAX_ID = 2**63 - 1


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite drops the zone; this puts it back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Refuse naive datetimes (ambiguous) and store UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return an aware UTC datetime."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def database_now(bind: Session | scoped_session[Session] | Connection) -> datetime:
    """The database server's clock, timezone-aware UTC: the one clock that liveness (a grading's heartbeat, when
    a retry is due, when a run was handed to the broker), deadlines (an upload's lateness, when after-due-date
    results show) and what an LMS orders grades by (a run's `finished_at`, an AGS score's timestamp) are written and
    judged by, whichever host writes or judges.

    Hosts' clocks drift apart. A heartbeat written by a worker whose clock runs behind looked stale to a sweep on
    another host, which queued the grading again while it ran, and again at each sweep, until the run's attempts
    were spent and a submission that was being graded ended in error. PostgreSQL's `statement_timestamp()`; an
    embedded SQLite database has no clock of its own but this host's, which every process using it shares.
    """
    dialect = bind.dialect if isinstance(bind, Connection) else bind.get_bind().dialect
    if dialect.name != "postgresql":
        return utcnow()
    now = bind.scalar(select(func.statement_timestamp(type_=UTCDateTime())))
    assert now is not None
    return now
