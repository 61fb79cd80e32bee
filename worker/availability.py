"""A worker that cannot grade stops taking gradings: while its runner is unready (the host's Docker engine does not
answer, or the runner image is gone) or its scratch folder cannot take a grading's files (the disk is full, or
was remounted read-only), it stops consuming its queues, and it starts again once it can grade.

Without this, a worker host whose Docker engine died, or whose disk filled, kept taking tasks and failed each at
once. Idle while the healthy workers were busy, it took nearly every message of a deadline rush, and every retry
of each, until the runs had spent their retries and ended in error, although other workers could have graded
them all (and, with no other worker, although the runs could have waited for the host to be repaired). Paused,
it leaves the queue to those workers; when no worker can grade, the runs wait in the queue, shown as queued.

A thread of the worker's main process asks every `GRADER_RUNNER_CHECK_INTERVAL` seconds; the consumer itself
cancels and adds the queues, in its own event loop (`Consumer.call_soon` is thread-safe). A grading that met the
failure before the pause is retried with backoff, as any infrastructure error is, and by then goes to a worker
that can grade it.

Whether a worker takes gradings, and why not, is asked by the instructor's queue panel: the inspect command
`grader_worker_state` answers with the queues the worker consumes now and the reason it paused, if it did.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery.signals import worker_ready, worker_shutdown
from celery.worker.control import inspect_command

log = logging.getLogger(__name__)

_stop = threading.Event()
_watch: ReadinessWatch | None = None  # this worker's, once its consumer is ready


def grading_problem(runner: str, image: str | None) -> str | None:
    """Why this worker cannot grade now, in words for its log and the instructor's queue panel; None when it can."""
    from worker.engine.grade import scratch_problem
    from worker.engine.runners import unready_reason

    reason = unready_reason(runner, image)
    if reason is not None:
        return f"its {runner} runner cannot grade: {reason}"
    return scratch_problem()


class ReadinessWatch:
    """Pauses and resumes one worker's consumer as its ability to grade changes."""

    def __init__(self, consumer: Any, runner: str, interval: float) -> None:
        self.consumer, self.runner, self.interval = consumer, runner, interval
        self.image: str | None = None
        if runner == "docker":  # the image this worker's runners use (its inputs as they were at start)
            from worker.engine.image import image_name

            self.image = image_name()
        self.queues = list(consumer.app.amqp.queues.consume_from)  # what the worker was started to consume
        self.paused = False
        self.reason: str | None = None  # why it cannot grade, as of the last check

    def check(self) -> None:
        """Ask once; pause or resume the consumer on a change."""
        reason = grading_problem(self.runner, self.image)
        self.reason = reason  # kept current: the queue panel shows it while the worker is paused
        if reason is not None and not self.paused:
            log.warning("this worker stopped taking gradings: %s", reason)
            for queue in self.queues:
                self.consumer.call_soon(self.consumer.cancel_task_queue, queue)
            self.paused = True
        elif reason is None and self.paused:
            log.warning("this worker takes gradings again: it can grade")
            for queue in self.queues:
                self.consumer.call_soon(self.consumer.add_task_queue, queue)
            self.paused = False

    def run(self) -> None:
        """Check now (a worker that starts on a full disk takes nothing), then every interval until shutdown."""
        while True:
            try:
                self.check()
            except Exception:  # a check that fails says nothing about the worker: ask again next time
                log.exception("checking whether this worker can grade failed")
            if _stop.wait(self.interval):
                return


@worker_ready.connect
def _start_watching(sender: Any = None, **_: Any) -> None:
    """Start the watch once the consumer is ready (`sender` is the consumer)."""
    celery_app = getattr(sender, "app", None)
    flask_app = getattr(celery_app, "flask_app", None)
    if flask_app is None or not hasattr(sender, "call_soon"):
        return
    from grader.config import resolve_runner

    runner = resolve_runner(flask_app.config["GRADER_RUNNER"], announce=False)
    watch = ReadinessWatch(sender, runner, float(flask_app.config["GRADER_RUNNER_CHECK_INTERVAL"]))
    global _watch
    _watch = watch
    _stop.clear()
    threading.Thread(target=watch.run, name="readiness-watch", daemon=True).start()


@worker_shutdown.connect
def _stop_watching(**_: Any) -> None:
    _stop.set()


@inspect_command()
def grader_worker_state(state: Any) -> dict[str, Any]:
    """The queues this worker takes gradings from now (none while it is paused), and why it paused, if it did."""
    watch = _watch
    if watch is not None and watch.paused:
        return {"queues": [], "paused": watch.reason or "it cannot grade (it is back, and resuming)"}
    consumer = state.consumer.task_consumer
    return {"queues": sorted(queue.name for queue in consumer.queues) if consumer else [], "paused": None}
