"""Test-only: a worker whose PYTHONPATH starts with this folder dies by SIGKILL right after its first commit
that stored an LMS delivery (the outbox row written with a grade), before it queues anything.

`tests/service/test_service_recovery.py` starts one worker so, to kill it for real at the one moment that a
timed kill cannot hit: between storing a grade and telling the LMS. Python imports this module at start-up
(`sitecustomize`) in every process of that worker's tree; it acts only where GRADER_TEST_DIE_AFTER_OUTBOX names
the file that records the kill (created exclusively: one kill per test, whichever process gets there first).
"""

from __future__ import annotations

import os
import signal
from typing import Any

MARK = os.environ.get("GRADER_TEST_DIE_AFTER_OUTBOX")

if MARK:
    try:
        from sqlalchemy import event
        from sqlalchemy.orm import Session
    except ImportError:  # a process of the tree without the worker's libraries (none expected)
        pass
    else:
        @event.listens_for(Session, "after_flush")
        def _note_outbox_row(session: Session, _context: Any) -> None:
            if any(type(row).__name__ == "LmsDelivery" for row in session.new):
                session.info["die_after_commit"] = True

        @event.listens_for(Session, "after_soft_rollback")
        def _forget(session: Session, _previous: Any) -> None:
            session.info.pop("die_after_commit", None)

        @event.listens_for(Session, "after_commit")
        def _die(session: Session) -> None:
            # SQLAlchemy sends after_commit for a released savepoint too (the outbox rows' own): wait for the
            # outermost commit, the one that stores the grade.
            if session.get_nested_transaction() is not None or not session.info.pop("die_after_commit", False):
                return
            try:
                fd = os.open(MARK, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:
                return
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            os.kill(os.getpid(), signal.SIGKILL)
