"""The one Celery app, built from the Flask app (Flask's `celery_init_app` pattern), and how grader enqueues.

Nothing is created at import time: `grader worker`, `grader beat` and the web process each call `create_app()`,
which calls `celery_init_app(app)`. The service never imports a task: it sends one by name (`send`), and the
worker process imports the tasks (`worker.tasks`, named in `include`) when it starts. Every task runs in an app
context through the one base class here, `AppContextTask`.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task
from flask import Flask, current_app, has_app_context

# Task names: the contract between the service (which sends them) and worker/tasks.py (which defines them).
GRADE_SUBMISSION = "grader.grade_submission"
DELIVER_EVENT = "grader.lms.deliver_event"
PUBLISH_SCORE = "grader.lms.publish_score"
RECOVER_RUNS = "grader.recover_runs"
LMS_DUE = "grader.lms_due"
PURGE_RECEIPTS = "grader.purge_receipts"
CLEANUP_HOST = "grader.cleanup_host"
# Where the tasks are defined: imported by worker and beat processes only (Celery's `include`), never by the web.
TASK_MODULES = ["worker.tasks"]


class AppContextTask(Task):
    """Runs inside an app context of its own, and so with a database session of its own, of the Flask app that
    built this Celery app — except a task run eagerly (`apply()`) inside its caller's app context, which shares
    the caller's session instead of getting a second, blind one (as in Superset)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        flask_app = getattr(self.app, "flask_app", None)
        if flask_app is None or (self.request.is_eager and has_app_context()):
            return self.run(*args, **kwargs)
        # Even where the process already has an app context: `grader worker` runs inside the app context of
        # Flask's command line, and every pool process inherits it. Sharing its session, one task that met a
        # database outage left the session failed for every later task of the process (each ended in error with
        # PendingRollbackError until the worker restarted).
        with flask_app.app_context():
            return self.run(*args, **kwargs)


def celery_init_app(app: Flask) -> Celery:
    """Create the Celery app from `app.config["CELERY"]`, store it in `app.extensions["celery"]`."""
    celery_app = Celery(app.name, task_cls=AppContextTask, include=TASK_MODULES)
    celery_app.config_from_object(app.config["CELERY"])
    celery_app.flask_app = app  # type: ignore[attr-defined]  (for signal handlers and failure callbacks)
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    if str(celery_app.conf.broker_url).startswith("filesystem://"):
        # The embedded broker has no host: kombu's "No hostname was supplied" at each connection (the web's, the
        # worker's, beat's) is noise to whoever runs it.
        logging.getLogger("kombu.connection").addFilter(_no_hostname_notice)
    return celery_app


def _no_hostname_notice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("No hostname was supplied")


def send(name: str, args: list[Any] | None = None, kwargs: dict[str, Any] | None = None, **options: Any) -> Any:
    """Publish task `name` through the current app's Celery app (routing, retry policy and queue options apply);
    broker failures are raised to the caller, which decides whether the outbox sweep will send it later."""
    celery_app: Celery = current_app.extensions["celery"]
    # Outcomes live in SQL (every task is ignore_result): without this, send_task would subscribe to a result
    # channel in the result backend for each message, as a task's own apply_async knows not to.
    options.setdefault("ignore_result", True)
    return celery_app.send_task(name, args=args or [], kwargs=kwargs or {}, **options)
