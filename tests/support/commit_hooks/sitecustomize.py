"""Test-only: a process whose PYTHONPATH starts with this folder acts right after the commit that stores a row of a
given kind, to be caught for real at a moment that a timed fault cannot hit, or waits less between its tries to
reach the broker. Python imports this module at start-up (`sitecustomize`) in every process of the tree; it acts
only where one of these variables is set:

* `GRADER_TEST_DIE_AFTER_OUTBOX=FILE`: SIGKILL itself right after its first commit that stored an LMS delivery
  (the outbox row written with a grade), before it queues anything. FILE records the kill, created exclusively:
  one kill per test, whichever process gets there first (`tests/service/test_service_recovery.py`: between
  storing a grade and telling the LMS).
* `GRADER_TEST_DIE_AFTER_SUBMISSION=FILE`: the same, right after its first commit that stored a submission (an
  upload's, before the web process answers it; `tests/service/test_upload_idempotency.py`: an answer that never
  arrives).
* `GRADER_TEST_HOLD_AFTER_RECEIPT=SECONDS`: sleep that long right after its first commit that made it the owner
  of an inbound LMS webhook (its replay record, no answer yet), then go on as usual; once per process
  (`tests/service/test_lms_clock_skew.py`: a first attempt still being answered when the retry arrives).
* `GRADER_TEST_BROKER_RETRY_SECONDS=SECONDS`: wait that long between tries to reach the broker, not kombu's 2 s
  growing by 2 s to 30 s (`tests/service/test_service_recovery.py`: more tries than Celery's default limit of
  100, about 46 minutes of outage, in seconds). Only the waits change: the tries, and what ends them, are kombu's.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

# The row whose commit kills the process, and the file that records the kill.
DIE_AFTER = {model: mark for model, mark in (("LmsDelivery", os.environ.get("GRADER_TEST_DIE_AFTER_OUTBOX")),
                                             ("Submission", os.environ.get("GRADER_TEST_DIE_AFTER_SUBMISSION")))
             if mark}
HOLD = float(os.environ.get("GRADER_TEST_HOLD_AFTER_RECEIPT") or 0)
BROKER_RETRY = float(os.environ.get("GRADER_TEST_BROKER_RETRY_SECONDS") or 0)


def _die(mark: str) -> Callable[[], None]:
    def die() -> None:
        try:
            fd = os.open(mark, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            return
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)

    return die


_held: list[float] = []


def _hold() -> None:
    if not _held:
        _held.append(time.monotonic())
        time.sleep(HOLD)


def _retry_broker_every(seconds: float) -> None:
    """Make every `kombu.Connection.ensure_connection` (Celery's consumer reconnects through it) wait `seconds`
    between tries."""
    from kombu.connection import Connection

    ensure = Connection.ensure_connection

    def ensure_quickly(self: Connection, *args: Any, **kwargs: Any) -> Any:
        kwargs.update(interval_start=seconds, interval_step=0, interval_max=seconds)
        return ensure(self, *args, **kwargs)

    Connection.ensure_connection = ensure_quickly  # type: ignore[method-assign]


def _after_commit_storing(model: str, action: Callable[[], None]) -> None:
    """Run `action` after each outermost commit whose transaction inserted a `model` row."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    flag = f"after_commit:{model}"

    @event.listens_for(Session, "after_flush")
    def _note(session: Session, _context: Any) -> None:
        if any(type(row).__name__ == model for row in session.new):
            session.info[flag] = True

    @event.listens_for(Session, "after_soft_rollback")
    def _forget(session: Session, _previous: Any) -> None:
        session.info.pop(flag, None)

    @event.listens_for(Session, "after_commit")
    def _act(session: Session) -> None:
        # SQLAlchemy sends after_commit for a released savepoint too (the outbox rows' own): wait for the
        # outermost commit, the one that stores the grade.
        if session.get_nested_transaction() is None and session.info.pop(flag, False):
            action()


if DIE_AFTER or HOLD:
    try:
        import sqlalchemy  # noqa: F401
    except ImportError:  # a process of the tree without the service's libraries (none expected)
        pass
    else:
        for row_model, kill_mark in DIE_AFTER.items():
            _after_commit_storing(row_model, _die(kill_mark))
        if HOLD:
            _after_commit_storing("LmsWebhookReceipt", _hold)
if BROKER_RETRY:
    _retry_broker_every(BROKER_RETRY)
