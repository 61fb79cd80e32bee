"""The Celery app, built from the Flask app (Flask's `celery_init_app` pattern).

Nothing is created at import time: `grader worker` and the web process each call `create_app()`, which calls
`celery_init_app(app)`. Tasks are `shared_task`s in `worker.tasks`, bound to whichever Celery app exists.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task
from celery.signals import setup_logging, worker_process_init
from flask import Flask, has_app_context


def celery_init_app(app: Flask) -> Celery:
    """Create the Celery app from `app.config["CELERY"]`, store it in `app.extensions["celery"]`."""

    class FlaskTask(Task):
        """Runs inside an app context — pushing one only when none is active, so an eagerly-run task
        shares its caller's database session instead of getting a second, blind one (as in Superset)."""

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            if has_app_context():
                return self.run(*args, **kwargs)
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(app.config["CELERY"])
    celery_app.flask_app = app  # type: ignore[attr-defined]  (for signal handlers and failure callbacks)
    celery_app.set_default()
    app.extensions["celery"] = celery_app

    import worker.tasks  # noqa: F401  (registers the shared tasks on this app)

    return celery_app


@worker_process_init.connect
def _fresh_connections_after_fork(**_: Any) -> None:
    """A forked pool process must not reuse the parent's database connections: drop them."""
    from celery import current_app as celery_current

    from grader.extensions import db

    flask_app = getattr(celery_current, "flask_app", None)
    if flask_app is not None:
        with flask_app.app_context():
            for engine in db.engines.values():
                engine.dispose(close=False)


@setup_logging.connect
def _our_logging(loglevel: Any = None, **_: Any) -> None:
    """Keep the app's dictConfig (plain or JSON) in the worker: a receiver here stops Celery replacing it."""
    from celery import current_app as celery_current

    from grader.logs import configure_logging

    flask_app = getattr(celery_current, "flask_app", None)
    fmt = flask_app.config["GRADER_LOG_FORMAT"] if flask_app is not None else "plain"
    if isinstance(loglevel, int):
        level = logging.getLevelName(loglevel)
    elif isinstance(loglevel, str):
        level = loglevel.upper()
    else:
        level = flask_app.config["GRADER_LOG_LEVEL"] if flask_app is not None else "INFO"
    configure_logging(fmt, level)
