"""The grading queue's state: workers online and whether each takes gradings, runs waiting and running, how long
waits are (the instructor's pages and their live endpoint show it)."""

from __future__ import annotations

import logging
import statistics
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, select

from grader.database import db
from grader.models import GradingRun, Submission, database_now
from grader.services.periodic import sweep_warning

log = logging.getLogger(__name__)

# Asking the workers costs up to PING_TIMEOUT of a request; remember the answer this long between asks.
PING_TIMEOUT = 0.7
PING_CACHE_SECONDS = 15.0
# A caller that does not wait (a student's page) is not shown an answer older than this while a new one is asked.
STALE_LIMIT = 60.0
RECENT_WAITS = timedelta(hours=1)

_cache: dict[str, tuple[float, list[WorkerState] | None]] = {}
_cache_lock = threading.Lock()
_asking: set[str] = set()  # brokers whose workers are being asked in the background now


@dataclass(frozen=True)
class WorkerState:
    """One worker that answered: the queues it takes gradings from now, and why it took itself off them."""

    name: str
    queues: tuple[str, ...] | None  # None: it did not say (a worker of another version): taken as taking all
    paused: str | None = None  # why it takes no gradings now (its runner cannot grade, its disk is full)

    def takes(self, queue: str) -> bool:
        """Whether this worker would take a run waiting in `queue` now."""
        return self.paused is None and (self.queues is None or queue in self.queues)


@dataclass(frozen=True)
class QueueState:
    """A snapshot of the grading queue."""

    workers: int | None  # None: the broker did not say (unknown, not zero)
    queued: int
    running: int
    by_queue: dict[str, int]
    oldest_wait: float | None  # seconds the oldest queued run has waited so far
    median_wait: float | None  # median seconds from queued to started, over the last hour
    paused: tuple[tuple[str, str], ...] = ()  # (worker, why) of each online worker that takes no gradings now
    untaken: tuple[str, ...] = ()  # queues with runs waiting that no online worker takes now (when it is known)
    sweeps: str | None = None  # what is wrong with the recovery sweeps, while runs wait on them

    @property
    def taking(self) -> int | None:
        """Workers online that take gradings now."""
        return None if self.workers is None else self.workers - len(self.paused)

    @property
    def unattended(self) -> bool:
        """Runs wait and no worker at all is online."""
        return self.workers == 0 and self.queued > 0

    @property
    def stalled(self) -> bool:
        """Waiting runs are not being graded: no worker is online, one of their queues is taken by no online
        worker, or the recovery sweeps they may need are late."""
        return self.unattended or bool(self.untaken) or self.sweeps is not None

    @property
    def stranded(self) -> int:
        """Runs waiting in a queue that no online worker takes now."""
        return sum(self.by_queue.get(queue, 0) for queue in self.untaken)

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the live endpoint."""
        return {
            "workers": self.workers,
            "queued": self.queued,
            "running": self.running,
            "by_queue": self.by_queue,
            "oldest_wait": self.oldest_wait,
            "median_wait": self.median_wait,
            "taking": self.taking,
            "paused": [{"worker": name, "why": why} for name, why in self.paused],
            "untaken": list(self.untaken),
            "sweeps": self.sweeps,
        }


def worker_states(*, wait: bool = True) -> list[WorkerState] | None:
    """Every Celery worker that answered, with what it takes (cached briefly); None when the broker cannot tell.

    With `wait` false the caller never waits on the broker (a student's page polls through it): it gets the last
    answer, None when there is none younger than STALE_LIMIT, and an answer older than the cache's lifetime is
    asked for again in the background, for the next caller.
    """
    celery_app = current_app.extensions.get("celery")
    if celery_app is None:
        return None
    if celery_app.conf.task_always_eager:
        return [WorkerState("this process", None)]  # tasks run inside this process: it is the worker
    key = str(celery_app.conf.broker_url)
    now = time.monotonic()
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None and now - cached[0] < PING_CACHE_SECONDS:
            return cached[1]
        if not wait:
            if key not in _asking:
                _asking.add(key)
                threading.Thread(target=_ask_workers, args=(celery_app, key), name="grader-ask-workers",
                                 daemon=True).start()
            return cached[1] if cached is not None and now - cached[0] < STALE_LIMIT else None
    return _ask_workers(celery_app, key)


def _ask_workers(celery_app: Any, key: str) -> list[WorkerState] | None:
    """Ask every worker its state (one broadcast, up to PING_TIMEOUT) and remember the answers under `key`."""
    asked = time.monotonic()
    states: list[WorkerState] | None
    try:
        # One broadcast, answered by each worker's `grader_worker_state` (worker.availability); the web app
        # names the command, as it names tasks, and imports nothing of the worker's.
        replies = celery_app.control.broadcast("grader_worker_state", reply=True, timeout=PING_TIMEOUT) or []
        states = sorted((_worker_state(name, answer) for reply in replies for name, answer in reply.items()),
                        key=lambda state: state.name)
    except Exception as exc:  # a dashboard must render even when the broker is down
        log.warning("could not ask the workers: %s", exc)
        states = None
    with _cache_lock:
        _cache[key] = (asked, states)
        _asking.discard(key)
    return states


def grading_paused(queue: str) -> bool:
    """Whether, by the workers' latest answer, no online worker takes gradings from `queue` now: none is online,
    or each is paused (its runner cannot grade, its disk is full) or takes other queues. Never waits on the
    broker; False while that is not known."""
    states = worker_states(wait=False)
    return states is not None and not any(state.takes(queue) for state in states)


def _worker_state(name: str, answer: Any) -> WorkerState:
    """A worker's answer; one that does not know the command (another version) is online, taking all queues."""
    if not isinstance(answer, dict) or not isinstance(answer.get("queues"), list):
        return WorkerState(name, None)
    paused = answer.get("paused")
    return WorkerState(name, tuple(str(q) for q in answer["queues"]), str(paused) if paused else None)


def queue_state(assignment_ids: list[int] | None = None, *, ping: bool = True) -> QueueState:
    """Counts and waits over every run (the queue is shared), or only those of the given assignments."""
    def scoped(query: Any) -> Any:
        """Limit a query over runs to the given assignments' submissions."""
        if assignment_ids is None:
            return query
        return query.join(Submission, Submission.id == GradingRun.submission_id).where(
            Submission.assignment_id.in_(assignment_ids)
        )

    by_status_queue = db.session.execute(
        scoped(select(GradingRun.status, GradingRun.queue, func.count()).select_from(GradingRun))
        .where(GradingRun.status.in_(("queued", "running")))
        .group_by(GradingRun.status, GradingRun.queue)
    ).all()
    queued = sum(int(n) for status, _, n in by_status_queue if status == "queued")
    running = sum(int(n) for status, _, n in by_status_queue if status == "running")
    by_queue: dict[str, int] = {}
    for status, queue, n in by_status_queue:
        if status == "queued":
            by_queue[queue] = by_queue.get(queue, 0) + int(n)
    now = database_now(db.session)  # the clock queued_at and started_at are written by
    oldest = db.session.scalar(
        scoped(select(func.min(GradingRun.queued_at)).select_from(GradingRun)).where(
            GradingRun.status == "queued"
        )
    )
    recent = db.session.execute(
        scoped(select(GradingRun.queued_at, GradingRun.started_at).select_from(GradingRun)).where(
            GradingRun.started_at.is_not(None), GradingRun.started_at >= now - RECENT_WAITS
        )
    ).all()
    waits = [max(0.0, (started - queued_at).total_seconds()) for queued_at, started in recent]
    workers = worker_states() if ping else None
    return QueueState(
        workers=None if workers is None else len(workers),
        queued=queued,
        running=running,
        by_queue=by_queue,
        oldest_wait=max(0.0, (now - _aware(oldest)).total_seconds()) if oldest else None,
        median_wait=statistics.median(waits) if waits else None,
        paused=tuple((w.name, w.paused) for w in workers or () if w.paused is not None),
        untaken=tuple(q for q in sorted(by_queue) if workers and not any(w.takes(q) for w in workers)),
        sweeps=sweep_warning(assignment_ids, now) if ping and not _eager() else None,
    )


def _eager() -> bool:
    """Tasks run inside this process (development, tests): there is no beat to miss."""
    celery_app = current_app.extensions.get("celery")
    return celery_app is None or bool(celery_app.conf.task_always_eager)


def _aware(value: datetime | str) -> datetime:
    # func.min() bypasses the UTC column type on SQLite, which then returns a naive string or datetime.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
