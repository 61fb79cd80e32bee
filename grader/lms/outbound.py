"""Outbound events: `submission.graded` / `submission.failed`, signed and POSTed to each integration's URL.

At least once: the delivery row is committed with the grade it reports (`on_outcome`), before its task is
queued; every attempt claims the row with a conditional UPDATE (a duplicate task message finds nothing to
claim), and `sweep()` re-queues deliveries whose message was lost. Between attempts the task waits
`GRADER_LMS_RETRY_DELAYS` (exponential, a day in all); after the last one the delivery is `failed` and its log
says so. Every attempt is logged.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import requests
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import selectinload

from grader.celery_app import DELIVER_EVENT, send
from grader.database import db
from grader.errors import NotFound
from grader.lms import settings
from grader.lms.crypto import SecretUnreadable
from grader.lms.integrations import sign_outbound
from grader.lms.retries import end_reads, held_back, pending_due, queue_once_committed, requeue
from grader.models import GradingRun, Submission, database_now
from grader.models.lms import LmsDelivery, LmsDeliveryAttempt, LmsIntegration
from grader.services.deadlines import withheld_until
from grader.services.queries import Page, newest_first
from worker.engine.policy import counted_score

log = logging.getLogger(__name__)
USER_AGENT = "grader-webhooks/1"


def event_document(event_type: str, run: GradingRun, when: datetime) -> dict[str, Any]:
    """The event body: ids and times let the LMS drop duplicates (same `webhook-id`) and stale ones (older
    `data.graded_at` for the same submission) — deliverable scores only, never test details."""
    submission: Submission = run.submission
    result = run.result or {}
    deliverables = [
        {key: item.get(key) for key in ("id", "title", "score", "max_score")}
        for item in result.get("deliverables", [])
        if isinstance(item, dict)
    ]
    return {
        "type": event_type,
        "timestamp": when.isoformat().replace("+00:00", "Z"),
        "data": {
            "submission_id": submission.id,
            "run": run.number,
            "user": {"external_id": submission.user.external_id, "email": submission.user.email},
            "assignment": submission.assignment.slug,
            "course": submission.assignment.course.code,
            "status": run.status,
            # The counted score (raw times the late credit decided at upload), with the raw one beside it.
            "score": counted_score(run.score, submission.credit),
            "raw_score": run.score,
            "credit": submission.credit,
            "late_seconds": submission.late_seconds,
            "max_score": run.max_score if run.max_score is not None else submission.assignment.max_score,
            "deliverables": deliverables,
            "message": run.message or "",
            "submitted_at": submission.created_at.isoformat(),
            "graded_at": run.finished_at.isoformat() if run.finished_at else None,
        },
    }


def create_deliveries(event_type: str, run_id: int) -> list[int]:
    """Record the event for every integration of the run's course that has a URL, in the caller's transaction
    (flushed, not committed); returns delivery ids.

    Unique per (integration, run, event type): a second notification for the same run adds nothing.
    """
    run = db.session.get(GradingRun, run_id)
    if run is None:
        return []
    course_id = run.submission.assignment.course_id
    integrations = db.session.scalars(
        select(LmsIntegration).where(
            LmsIntegration.course_id == course_id, LmsIntegration.outbound_url.is_not(None)
        )
    ).all()
    created: list[int] = []
    now = database_now(db.session)
    # A result with after-due-date tests leaves only once the student's due date has passed (`send_due`
    # picks it up then): the event carries every deliverable's score.
    wait = withheld_until(run.submission, run.result) if integrations else None
    for integration in integrations:
        exists = db.session.scalar(
            select(LmsDelivery.id).where(
                LmsDelivery.integration_id == integration.id,
                LmsDelivery.run_id == run.id,
                LmsDelivery.event_type == event_type,
            )
        )
        if exists is not None:
            continue
        delivery = LmsDelivery(
            integration=integration,
            event_id=f"msg_{uuid.uuid4().hex}",
            event_type=event_type,
            submission_id=run.submission_id,
            run_id=run.id,
            next_attempt_at=wait or now,
            payload=json.dumps(event_document(event_type, run, now), separators=(",", ":")),
        )
        db.session.add(delivery)
        db.session.flush()
        created.append(delivery.id)
    return created


# Retry delays up to this many seconds are Celery countdowns; longer ones wait for `send_due`.
MAX_COUNTDOWN = 60.0


def enqueue(delivery_id: int, expected_attempts: int, countdown: float = 0.0) -> None:
    """Queue attempt number `expected_attempts + 1` of a delivery (logged, not raised, if the broker is down:
    the row is committed and `sweep()` finds it)."""
    try:
        send(DELIVER_EVENT, args=[delivery_id, expected_attempts], countdown=countdown or None)
    except Exception:
        log.exception("could not queue delivery %s; sweep() will", delivery_id)


def attempt(delivery_id: int, expected_attempts: int) -> float | None:
    """Make one attempt if it is still due; returns the delay before the next one, or None when done.

    The conditional UPDATE claims the attempt: only a delivery still `pending` with exactly
    `expected_attempts` behind it is taken, so a duplicate or superseded task message does nothing.
    """
    pending = db.session.get(LmsDelivery, delivery_id)
    if pending is not None and pending.status == "pending" and held_back(pending):
        return None  # an extension moved the student's due date since: it waits for the new one
    claimed = db.session.execute(
        update(LmsDelivery)
        .where(
            LmsDelivery.id == delivery_id,
            LmsDelivery.status == "pending",
            LmsDelivery.attempts == expected_attempts,
        )
        .values(status="sending", attempts=expected_attempts + 1, next_attempt_at=database_now(db.session))
    ).rowcount
    db.session.commit()
    if not claimed:
        return None
    delivery = db.session.get(LmsDelivery, delivery_id)
    assert delivery is not None
    number = delivery.attempts
    started, clock = database_now(db.session), time.monotonic()
    status_code, error = _post(delivery, started)
    # By id: the delivery's attempt log is not loaded for it (the POST ended the transaction that read it).
    entry = LmsDeliveryAttempt(
        delivery_id=delivery_id,
        number=number,
        started_at=started,
        duration=round(time.monotonic() - clock, 4),
        status_code=status_code,
        error=error,
    )
    delivery.last_status_code, delivery.last_error = status_code, error
    delay: float | None = None
    if status_code is not None and 200 <= status_code < 300:
        delivery.status, delivery.delivered_at, delivery.next_attempt_at = "delivered", database_now(db.session), None
        entry.outcome = "delivered"
    else:
        delays = settings.retry_delays()
        made = number - delivery.round_start  # attempts in this round
        if made <= len(delays):
            delay = delays[made - 1]
            delivery.status, delivery.next_attempt_at = "pending", database_now(db.session) + timedelta(seconds=delay)
            entry.outcome = f"retry in {delay:g} s"
        else:
            delivery.status, delivery.next_attempt_at = "failed", None
            entry.outcome = f"gave up after {made} attempts"
            log.warning(
                "delivery %s to %s: gave up after %d attempts (%s)",
                delivery.event_id,
                delivery.integration.name,
                made,
                error or status_code,
            )
    db.session.add(entry)
    db.session.commit()
    return delay


def _post(delivery: LmsDelivery, when: datetime) -> tuple[int | None, str]:
    """POST the signed payload once: (status code, "") or (None, the network error)."""
    integration = delivery.integration
    if not integration.outbound_url:
        return None, "the integration has no outbound URL"
    try:
        # Signed per attempt: the timestamp must be fresh, while id and body stay the same.
        signature = sign_outbound(integration, delivery.event_id, when, delivery.payload)
    except SecretUnreadable as exc:
        return None, str(exc)
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": delivery.event_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signature,
    }
    url, body = integration.outbound_url, delivery.payload.encode()
    end_reads()  # no transaction waits on the receiver
    try:
        with requests.Session() as http:
            response = http.post(
                url,
                data=body,
                headers=headers,
                timeout=settings.timeout(),
                allow_redirects=False,
                stream=True,
            )
            with response:
                detail = (
                    ""
                    if response.ok
                    else response.raw.read(300, decode_content=True).decode(errors="replace")
                )
            return response.status_code, detail.strip()
    except requests.RequestException as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]


def deliver(delivery_id: int, expected_attempts: int = 0) -> None:
    """The delivery task's body (`worker.tasks.deliver_event`): attempt a delivery and, when it failed and
    retries remain, queue the next attempt after its delay."""
    delay = attempt(delivery_id, expected_attempts)
    # Only short waits ride on a countdown: a long one (hours) would outlive the broker's visibility timeout
    # and be redelivered early. It stays in `next_attempt_at`, which the periodic `send_due` polls.
    if delay is not None and delay <= MAX_COUNTDOWN:
        delivery = db.session.get(LmsDelivery, delivery_id)
        if delivery is not None:
            enqueue(delivery_id, delivery.attempts, countdown=delay)


def recent_deliveries(integration: LmsIntegration, limit: int, after: int | None = None,
                      status: str | None = None) -> Page[LmsDelivery]:
    """A page of the integration's deliveries (the delivery log page), newest first: those with `status` if
    given, after delivery `after` (the page's *Older* link: a place in the integration's log, so it holds when
    that delivery's own status has changed since; any other id starts at the newest). Each comes with its
    attempts, loaded in one query for the page (one per delivery before)."""
    query = select(LmsDelivery).where(LmsDelivery.integration_id == integration.id)
    if status is not None:
        query = query.where(LmsDelivery.status == status)
    start = db.session.get(LmsDelivery, after) if after is not None else None
    if start is not None and start.integration_id != integration.id:
        start = None
    found = list(db.session.scalars(
        newest_first(query, LmsDelivery, start).options(selectinload(LmsDelivery.attempt_log)).limit(limit + 1)
    ))
    return Page.of(found, limit, start)


def delivery_counts(integration: LmsIntegration) -> dict[str, int]:
    """How many of the integration's deliveries are in each status (the log page's filter links)."""
    rows = db.session.execute(select(LmsDelivery.status, func.count()).where(
        LmsDelivery.integration_id == integration.id).group_by(LmsDelivery.status))
    return {status: count for status, count in rows}


def find_delivery(integration: LmsIntegration, delivery_id: int) -> LmsDelivery:
    """The integration's delivery with this id, or NotFound (another integration's is not found either)."""
    delivery = db.session.get(LmsDelivery, delivery_id)
    if delivery is None or delivery.integration_id != integration.id:
        raise NotFound(f"no delivery {delivery_id} for {integration.name}")
    return delivery


def redeliver(delivery: LmsDelivery) -> None:
    """Start a new round for a delivery (whatever its state): one attempt now, then the usual retries."""
    # Supersedes any scheduled attempt: that message expects the old count and no longer claims anything...
    delivery.status, delivery.round_start = "pending", delivery.attempts
    delivery.next_attempt_at = database_now(db.session)
    db.session.commit()
    # ...except one expecting exactly this count, which may run instead of ours: either way, one attempt.
    enqueue(delivery.id, delivery.attempts)


def send_due(republish_after: float = 300.0) -> int:
    """Queue every pending delivery whose next attempt is due (the periodic poll; beat runs it every few
    seconds). The row is pushed `republish_after` seconds ahead, so a message still waiting in a busy queue is
    not sent again at each poll; a lost one is sent again after that. Returns how many were queued."""
    now = database_now(db.session)
    return requeue(pending_due(LmsDelivery, now), now + timedelta(seconds=republish_after), enqueue)


def sweep(grace: float = 300.0) -> int:
    """Re-queue deliveries whose attempt is overdue by more than `grace` seconds (a lost task message), and
    reset those stuck `sending` (a worker died mid-attempt). Returns how many were re-queued."""
    now = database_now(db.session)
    late = now - timedelta(seconds=grace)
    stuck_before = now - timedelta(seconds=grace + settings.timeout())
    rows = db.session.scalars(
        select(LmsDelivery).where(
            or_(
                (LmsDelivery.status == "pending") & (LmsDelivery.next_attempt_at < late),
                (LmsDelivery.status == "sending") & (LmsDelivery.next_attempt_at < stuck_before),
            )
        )
    ).all()
    for delivery in rows:
        if delivery.status == "sending":
            delivery.status = "pending"
            db.session.add(
                LmsDeliveryAttempt(
                    delivery=delivery,
                    number=delivery.attempts,
                    started_at=now,
                    error="no result was recorded",
                    outcome="lost: the worker stopped during this attempt",
                )
            )
    return requeue(rows, now, enqueue)


def on_outcome(app: Any, run: GradingRun, event: str, **_: Any) -> Callable[[], None] | None:
    """`outcome_recording` receiver: record the `submission.<event>` event for the course's integrations in the
    outcome's own transaction; once that has committed, queue them, unless they wait for the student's due date
    (`send_due` sends them then, and any whose queueing failed)."""
    return queue_once_committed(LmsDelivery, create_deliveries(f"submission.{event}", run.id), enqueue)
