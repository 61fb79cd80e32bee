"""Test-only: a web process whose PYTHONPATH starts with this folder holds its first inbound LMS webhook right
after the commit that makes it the message's owner (its replay record, with no answer yet), for
GRADER_TEST_HOLD_AFTER_RECEIPT seconds, then goes on as usual.

`tests/service/test_lms_receipt_clock_skew.py` starts one web process so, to have a first attempt still being
answered at the moment a retry of the same message reaches another web host: the moment that decides whether the
retry waits (409) or takes the attempt over as abandoned. Python imports this module at start-up
(`sitecustomize`); it acts only where the variable is set, once per process.
"""

from __future__ import annotations

import os
import time
from typing import Any

HOLD = float(os.environ.get("GRADER_TEST_HOLD_AFTER_RECEIPT") or 0)

if HOLD:
    try:
        from sqlalchemy import event
        from sqlalchemy.orm import Session
    except ImportError:
        pass
    else:
        held: list[float] = []

        @event.listens_for(Session, "after_flush")
        def _note_receipt(session: Session, _context: Any) -> None:
            if any(type(row).__name__ == "LmsWebhookReceipt" for row in session.new):
                session.info["hold_after_commit"] = True

        @event.listens_for(Session, "after_soft_rollback")
        def _forget(session: Session, _previous: Any) -> None:
            session.info.pop("hold_after_commit", None)

        @event.listens_for(Session, "after_commit")
        def _hold(session: Session) -> None:
            if session.info.pop("hold_after_commit", False) and not held:
                held.append(time.monotonic())
                time.sleep(HOLD)
