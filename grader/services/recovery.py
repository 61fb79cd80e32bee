"""Nothing lost, nothing stuck: publish runs from the outbox, and queue again runs whose worker died.

The database is the record and the broker only a doorbell. A run is committed before its task message is sent
(`publish`); when the broker is down the run keeps `enqueued_at` empty. Two periodic sweeps (run by
`grader beat`) repair whatever the broker or a worker lost:

* `requeue_lost`: a `running` run whose heartbeat is older than GRADER_HEARTBEAT_TIMEOUT lost its worker
  (host died, process killed): it goes back to `queued`, keeping its attempt count, and is published again.
* `publish_pending`: a `queued` run with no live message in the broker (never sent, or Redis restarted and
  forgot it, or held by a worker that died before starting it) is published again.

A task delivered twice is harmless: `grading.claim` lets only one delivery grade a run.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import or_, select, update

from grader.celery_app import GRADE_SUBMISSION as GRADE_TASK
from grader.celery_app import send
from grader.database import db
from grader.models import GradingRun, database_now
from grader.services import grading

log = logging.getLogger(__name__)

# kombu's Redis transport: priority sub-queues are named queue + separator + priority.
_PRIORITY_SEP, _PRIORITY_STEPS = "\x06\x16", (3, 6, 9)
# A published message gets this long to show up in the broker before a sweep may send it again.
PUBLISH_GRACE = 10.0


def publish(run: GradingRun) -> bool:
    """Send the grading task of committed `run` and record when; False (logged) when the broker refused."""
    run_id, submission_id, queue = run.id, run.submission_id, run.queue
    try:
        send(GRADE_TASK, args=[submission_id], kwargs={"run_id": run_id}, queue=queue)
    except Exception as exc:  # any broker failure: the outbox sweep sends it later
        log.warning("could not queue run %s of submission %s (%s); the sweep will", run_id, submission_id,
                    type(exc).__name__)
        return False
    db.session.execute(update(GradingRun).where(GradingRun.id == run_id).values(enqueued_at=database_now(db.session))
                       .execution_options(synchronize_session=False))
    db.session.commit()
    return True


def live_run_ids(unacked_grace: float | None = None) -> set[int] | None:
    """Ids of runs with a grading message the broker will still deliver; None when the broker cannot say.

    Redis only: the queue lists, plus messages a worker took (kombu's `unacked` hash) no longer than
    `unacked_grace` seconds ago — older ones belong to a worker that died before starting them, or are a
    retry's countdown, which the run's `not_before` accounts for.
    """
    import redis

    celery = current_app.extensions["celery"]
    url = str(celery.conf.broker_url)
    if not url.startswith(("redis://", "rediss://")):
        return None
    grace = float(current_app.config["GRADER_HEARTBEAT_TIMEOUT"]) if unacked_grace is None else unacked_grace
    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=10)
    try:
        ids: set[int] = set()
        for queue in ("cpu", "gpu"):
            for name in [queue] + [f"{queue}{_PRIORITY_SEP}{step}" for step in _PRIORITY_STEPS]:
                ids.update(_run_id(raw) for raw in client.lrange(name, 0, -1))
        fresh = time.time() - grace
        taken = dict(client.zrangebyscore("unacked_index", fresh, "+inf", withscores=True))
        for tag, raw in client.hgetall("unacked").items():
            if tag in taken:
                try:
                    ids.add(_run_id(json.loads(raw)[0]))
                except (ValueError, TypeError, IndexError):
                    continue
    finally:
        client.close()
    ids.discard(0)
    return ids


def _run_id(raw: Any) -> int:
    """The run id a kombu message carries (0 when it is not a grading message)."""
    try:
        message = json.loads(raw) if isinstance(raw, bytes | str) else raw
        if message.get("headers", {}).get("task") != GRADE_TASK:
            return 0
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        _args, kwargs, _embed = json.loads(body)
        return int(kwargs.get("run_id") or 0)
    except (ValueError, TypeError, KeyError, AttributeError):
        return 0


def pending_runs(live: set[int] | None = None) -> list[GradingRun]:
    """Queued runs that are due and have no live message (all never-sent ones where the broker cannot say)."""
    now = database_now(db.session)
    published_before = now - timedelta(seconds=PUBLISH_GRACE)
    query = (
        select(GradingRun)
        .where(GradingRun.status == "queued", or_(GradingRun.not_before.is_(None), GradingRun.not_before <= now))
        .order_by(GradingRun.id)
    )
    if live is None:
        query = query.where(GradingRun.enqueued_at.is_(None))
    else:
        query = query.where(or_(GradingRun.enqueued_at.is_(None), GradingRun.enqueued_at < published_before))
    return [run for run in db.session.scalars(query) if live is None or run.id not in live]


def lost_runs() -> list[GradingRun]:
    """Running runs whose worker stopped heartbeating more than GRADER_HEARTBEAT_TIMEOUT seconds ago."""
    stale = database_now(db.session) - timedelta(seconds=float(current_app.config["GRADER_HEARTBEAT_TIMEOUT"]))
    return list(db.session.scalars(
        select(GradingRun)
        .where(GradingRun.status == "running",
               or_(GradingRun.heartbeat_at < stale,
                   GradingRun.heartbeat_at.is_(None) & (GradingRun.started_at < stale)))
        .order_by(GradingRun.id)
    ))


def publish_pending() -> int:
    """The outbox sweep: publish every queued run with no live message; how many were sent."""
    try:
        live = live_run_ids()
    except Exception as exc:  # the broker is down: nothing can be sent now anyway
        log.info("outbox sweep skipped: the broker is unavailable (%s)", type(exc).__name__)
        return 0
    sent = 0
    for run in pending_runs(live):
        if not publish(run):
            break  # the broker went away: the next sweep tries again
        sent += 1
    if sent:
        log.warning("outbox: published %d queued run(s) that had no message in the broker", sent)
    return sent


def requeue_lost() -> int:
    """The liveness sweep: queue again every run whose worker is gone; how many."""
    requeued = 0
    for run in lost_runs():
        if requeue(run, "the worker grading it stopped"):
            requeued += 1
    return requeued


def requeue(run: GradingRun, why: str, limit_attempts: bool = True) -> bool:
    """Put a queued, running or errored run back in the queue and publish it; False when it changed under us
    (finished, or taken over) or it ran out of attempts (then it ends in error)."""
    previous, heartbeat = run.status, run.heartbeat_at
    if limit_attempts and run.attempt >= int(current_app.config["GRADER_MAX_ATTEMPTS"]):
        grading.record_error(run, f"grading was interrupted {run.attempt} times ({why}); an instructor can "
                                  "queue it again with `grader submission requeue`")
        return False
    message = f"queued again after attempt {run.attempt}: {why}" if run.attempt else f"queued again: {why}"
    changed = db.session.execute(
        update(GradingRun)
        .where(GradingRun.id == run.id, GradingRun.status == previous,
               GradingRun.heartbeat_at.is_(None) if heartbeat is None else GradingRun.heartbeat_at == heartbeat)
        .values(status="queued", message=message, enqueued_at=None, heartbeat_at=None, not_before=None,
                finished_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not changed:
        db.session.rollback()
        return False
    db.session.refresh(run)
    if run.published:
        run.submission.status = "queued"
    db.session.commit()
    log.warning("run %s of submission %s: %s", run.id, run.submission_id, message)
    publish(run)
    return True


@dataclass
class Stuck:
    """A run the sweeps would act on, and why."""

    run: GradingRun
    reason: str


def stuck_runs() -> list[Stuck]:
    """What the sweeps would do now, without doing it (for `grader submission requeue --stuck --dry-run`)."""
    found = [Stuck(run, "running, but its worker stopped heartbeating") for run in lost_runs()]
    try:
        live = live_run_ids()
    except Exception:
        live = None
    found += [Stuck(run, "queued, but the broker has no message for it" if run.enqueued_at else
                    "queued, but never handed to the broker") for run in pending_runs(live)]
    return found
