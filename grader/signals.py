"""Events other parts subscribe to (LMS webhooks, LTI grade passback, live dashboards).

Each signal is sent with the Flask app as sender and keyword arguments `submission_id` and `run_id` (graded and
failed also `published`: False for a regrade's run awaiting an instructor's decision), after the database
transaction that made the event true has committed, inside an app context. Receivers should be quick
(enqueue a Celery task for anything that talks to the network): they run in the grading worker.

    from grader.signals import submission_graded

    @submission_graded.connect
    def on_graded(app, submission_id, run_id, **extra): ...
"""

from __future__ import annotations

import logging
from typing import Any

from blinker import Namespace, Signal
from flask import current_app

_signals = Namespace()

#: A submission was stored and its first grading run queued (web process).
submission_queued = _signals.signal("submission-queued")
#: A grading run finished with a score (whatever the score). `published` says whether it is the visible one.
submission_graded = _signals.signal("submission-graded")
#: A grading run ended in error after its retries (not the student's fault).
submission_failed = _signals.signal("submission-failed")

log = logging.getLogger(__name__)


def notify(signal: Signal, **kwargs: Any) -> None:
    """Send `signal`, isolating receivers: one that raises is logged and cannot undo the committed event."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    for receiver in list(signal.receivers_for(app)):
        try:
            receiver(app, **kwargs)
        except Exception:
            log.exception("receiver %r of %s failed", receiver, signal.name)
