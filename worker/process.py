"""What a worker or beat process does around its tasks: Celery signal hooks and the in-process beat scheduler.

The Celery app itself is the service's (`grader.celery_app.celery_init_app`); this module is imported with
`worker.tasks` when a worker or beat process starts, and connects its hooks then.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
from typing import Any

from celery.beat import Scheduler
from celery.signals import setup_logging, worker_init, worker_process_init, worker_ready, worker_shutdown
from sqlalchemy.orm import configure_mappers

log = logging.getLogger(__name__)
HOST_CLEANUP_INTERVAL = 600.0  # seconds between a worker's sweeps of its own host's leftovers


@worker_init.connect
def _freeze_before_the_pool_forks(**_: Any) -> None:
    """What exists now (the imported modules, the apps) leaves the garbage collector's reach, before the pool
    forks: a collection writes to every object it walks, so in the worker and in each pool process it would copy,
    page by page, the memory they share (measured: a pool process's private memory doubled over 300 gradings).
    What a grading imports is imported first, and the ORM's mappers configured (each pool process did that on its
    first query: 3-4 MB of private memory each, measured), so that the pool processes share them too."""
    import worker.engine.grade
    import worker.engine.judge.launch
    import worker.engine.runners.docker
    import worker.engine.runners.local  # noqa: F401

    configure_mappers()

    gc.collect()
    gc.freeze()


@worker_init.connect
def _start_the_judge_master(sender: Any = None, **_: Any) -> None:
    """One judge master per worker, before the pool forks (`worker.engine.judge.master`): its slots' judge
    zygotes share one import of torch and pytest, and their sandboxes one zygote container per kind."""
    from worker.engine.judge.launch import start_master

    concurrency = getattr(sender, "concurrency", None)
    start_master(concurrency if isinstance(concurrency, int) and concurrency > 0 else os.cpu_count() or 1)


@worker_process_init.connect
def _leave_the_judge_master_to_the_worker(**_: Any) -> None:
    """A pool process holds no lifeline of the master's: only the worker's main process ends it."""
    from worker.engine.judge.launch import forget_master

    forget_master()


@worker_process_init.connect
def _freeze_what_the_pool_process_inherits(**_: Any) -> None:
    """The same in a pool process, for what the worker made after `worker_init` and before forking it."""
    gc.freeze()


@worker_process_init.connect
def _fresh_connections_after_fork(**_: Any) -> None:
    """A forked pool process must not reuse the parent's database connections: drop them."""
    from celery import current_app as celery_current

    from grader.database import db

    flask_app = getattr(celery_current, "flask_app", None)
    if flask_app is not None:
        with flask_app.app_context():
            for engine in db.engines.values():
                engine.dispose(close=False)


class InProcessScheduler(Scheduler):
    """Celery beat that runs each periodic job in its own process instead of sending it to a queue.

    The sweeps exist to repair what the broker lost, so they must not depend on it: they run while Redis is
    down (and publish the moment it is back), and never wait behind a queue full of gradings. The jobs are
    short database queries. Start one beat per deployment (`grader beat`, or the one `grader serve` embeds).
    """

    @property
    def producer(self) -> None:  # type: ignore[override]
        """No broker connection: nothing is sent."""
        return None

    def install_default_entries(self, data: Any) -> None:
        """No result-backend cleanup entry: outcomes live in SQL."""

    def apply_async(self, entry: Any, producer: Any = None, advance: bool = True, **kwargs: Any) -> Any:
        """Run the entry's task here and now (exceptions are logged, and the schedule goes on)."""
        from grader.services.periodic import record_run

        entry = self.reserve(entry) if advance else entry
        task = self.app.tasks[entry.task]
        # An app context, and so a database session, per job: beat runs inside the command line's app context,
        # whose session a job that met a database outage would leave failed for every later job.
        with self.app.flask_app.app_context():  # type: ignore[attr-defined]
            result = task.apply(args=entry.args, kwargs=entry.kwargs)
            # Recorded, so that the queue panel can tell when the sweeps stop (grader.services.periodic).
            record_run(entry.task, f"{type(result.result).__name__}: {result.result}" if result.failed() else None)
        if result.failed():
            log.error("periodic job %s failed: %r", entry.task, result.result)
        elif result.result:
            log.info("periodic job %s: %s", entry.task, result.result)
        return result


_host_cleanup_stop = threading.Event()


@worker_ready.connect
def _start_host_cleanup(sender: Any = None, **_: Any) -> None:
    """Each worker sweeps its own host (sandbox containers, judge scratch) at start and every 10 minutes:
    a leftover lives where the worker that made it ran, which may not be where beat runs."""
    celery_app = getattr(sender, "app", None)
    flask_app = getattr(celery_app, "flask_app", None)
    if flask_app is None:
        return
    _host_cleanup_stop.clear()

    def loop() -> None:
        from worker.tasks import cleanup_host

        while True:
            try:
                with flask_app.app_context():
                    removed = cleanup_host()
                if any(removed.values()):
                    log.warning("removed leftovers of earlier gradings on this host: %s", removed)
            except Exception:
                log.exception("host cleanup failed")
            if _host_cleanup_stop.wait(HOST_CLEANUP_INTERVAL):
                return

    threading.Thread(target=loop, name="host-cleanup", daemon=True).start()


@worker_shutdown.connect
def _stop_host_cleanup(**_: Any) -> None:
    _host_cleanup_stop.set()


@worker_shutdown.connect
def _stop_the_judge_master(**_: Any) -> None:
    """After the pool: the master stops its judge zygotes and the sandbox zygote containers."""
    from worker.engine.judge.launch import stop_master

    stop_master()


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
