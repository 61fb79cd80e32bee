"""The retry bookkeeping outbound webhooks and LTI score publication share: which rows are due, how a row is
handed to the queue again (its next attempt moved first, committed, then the task sent), whether a row's
result must still wait for the student's due date, what to queue once a grade's new rows have committed, and
how an attempt lets go of the database before it calls a peer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select

from grader.database import db
from grader.models import GradingRun, database_now
from grader.models.lms import LmsDelivery, LtiScore
from grader.services.deadlines import withheld_until

Retried = LmsDelivery | LtiScore


def pending_due(model: type[LmsDelivery] | type[LtiScore], now: datetime) -> list[Any]:
    """The `pending` rows of `model` whose next attempt is due by `now`."""
    return list(db.session.scalars(select(model).where(model.status == "pending", model.next_attempt_at <= now)))


def requeue(rows: Sequence[Retried], next_attempt_at: datetime, enqueue: Callable[[int, int], None]) -> int:
    """Move each row's next attempt to `next_attempt_at`, commit, then enqueue it; how many.

    Committed before sending: a task that starts at once must find the row as it will be, and a message that is
    lost is found again by the next poll once `next_attempt_at` has passed.
    """
    for row in rows:
        row.next_attempt_at = next_attempt_at
    db.session.commit()
    for row in rows:
        enqueue(row.id, row.attempts)
    return len(rows)


def held_back(row: Retried) -> bool:
    """Whether `row`'s result must wait longer before it leaves: it has after-due-date points and the student's
    due date, moved by an extension since the row was queued, is still ahead. Its next attempt is then moved to
    that due date (committed), where the periodic `send_due` picks it up."""
    run = db.session.get(GradingRun, row.run_id) if row.run_id is not None else None
    wait = withheld_until(run.submission, run.result) if run is not None else None
    if wait is None:
        return False
    row.next_attempt_at = wait
    db.session.commit()
    return True


def queue_once_committed(model: type[LmsDelivery] | type[LtiScore], created: list[int],
                         enqueue: Callable[[int, int], None]) -> Callable[[], None] | None:
    """What an `outcome_recording` receiver returns for the rows of `model` it `created`: queue the first attempt
    of each that is due once the grade has committed. One held for the student's due date (its `next_attempt_at`
    later than now) waits for the periodic poll, as does any whose queueing failed."""
    now = database_now(db.session)
    due = [row_id for row_id in created
           if (row := db.session.get(model, row_id)) is not None  # flushed just now: no query
           and (row.next_attempt_at is None or row.next_attempt_at <= now)]
    if not due:
        return None

    def queue() -> None:
        for row_id in due:
            enqueue(row_id, 0)

    return queue


def end_reads() -> None:
    """End the session's transaction (it holds reads only) before a network call: one left open while a peer
    takes its time (up to `GRADER_LMS_TIMEOUT` a request) holds back PostgreSQL's vacuum and keeps the locks of
    what it read, on which a migration's ALTER TABLE, and every query queued behind it, would wait. What the
    caller touches afterwards loads again."""
    db.session.commit()
