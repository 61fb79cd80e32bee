"""Events other parts subscribe to (LMS webhooks, LTI grade passback, live dashboards).

Each signal is sent with the Flask app as sender and keyword arguments `submission_id` and `run_id` (graded and
failed also `published`: False for a regrade's run awaiting an instructor's decision), after the database
transaction that made the event true has committed, inside an app context. Receivers should be quick
(enqueue a Celery task for anything that talks to the network): they run in the grading worker.

    from grader.signals import submission_graded

    @submission_graded.connect
    def on_graded(app, submission_id, run_id, **extra): ...

One is sent before its commit instead: `outcome_recording`, for rows that must exist exactly when the outcome
does (an outbox: the LMS's deliveries and score publications). Were they written after the commit, a worker
killed between the two would leave a grade the LMS never hears of.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from blinker import Namespace, Signal
from flask import current_app

from grader.database import db

_signals = Namespace()

#: A submission was stored and its first grading run queued (web process).
submission_queued = _signals.signal("submission-queued")
#: A grading run finished with a score (whatever the score). `published` says whether it is the visible one.
submission_graded = _signals.signal("submission-graded")
#: A grading run ended in error after its retries (not the student's fault).
submission_failed = _signals.signal("submission-failed")
#: A visible outcome is being recorded: a run graded or failed (`event` "graded" or "failed"), or a regrade's run
#: published. Sent inside the transaction that records it, before the commit, with `run` (the GradingRun).
#: Receivers add their rows to `db.session` and never commit; each may return a callable to run once the
#: outcome has committed (to queue the rows' work now rather than at the next poll). Not sent for a regrade's
#: run awaiting an instructor's decision: its outcome is not the student's yet.
outcome_recording = _signals.signal("outcome-recording")

log = logging.getLogger(__name__)


def notify(signal: Signal, **kwargs: Any) -> None:
    """Send `signal`, isolating receivers: one that raises is logged and cannot undo the committed event."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    for receiver in list(signal.receivers_for(app)):
        try:
            receiver(app, **kwargs)
        except Exception:
            log.exception("receiver %r of %s failed", receiver, signal.name)


def record_outbox(**kwargs: Any) -> Callable[[], None]:
    """Send `outcome_recording` inside the caller's transaction; returns what to call once it has committed.

    The receivers share one savepoint: should one fail (a bug, a refused statement), the rows of all of them
    are dropped and logged, and each receiver is tried again on its own after the commit, so the outcome never
    depends on them (as before the outbox, a worker killed in between then leaves the LMS unaware).
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        with db.session.begin_nested():
            followups = [then for _, then in outcome_recording.send(app, **kwargs) if then is not None]
    except Exception:
        log.exception("the outbox rows of %s could not be recorded with it; trying again after its commit",
                      kwargs)
        return lambda: _record_one_by_one(app, kwargs)
    return lambda: _run_isolated(followups)


def _record_one_by_one(app: Any, kwargs: dict[str, Any]) -> None:
    for receiver in list(outcome_recording.receivers_for(app)):
        try:
            then = receiver(app, **kwargs)
            db.session.commit()
        except Exception:
            db.session.rollback()
            log.exception("receiver %r of %s failed", receiver, outcome_recording.name)
            continue
        if then is not None:
            _run_isolated([then])


def _run_isolated(followups: list[Callable[[], None]]) -> None:
    for then in followups:
        try:
            then()
        except Exception:  # the rows are committed: the periodic poll does what this could not
            log.exception("queueing the work of a recorded outcome failed; the periodic poll will")
