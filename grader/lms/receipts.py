"""Replay records for inbound LMS webhooks: exactly one owner per webhook id, the answer it got, and the
takeover of an attempt that died midway.

No HTTP here: the view (`grader.lms.inbound`) turns a claim into a response. Receipts are kept long enough to
cover an LMS's retries of one message (Standard Webhooks senders retry for days), then purged by
`grader lms sweep` and the periodic task.

A receipt's age is the database server's clock, as liveness is elsewhere: a retry that reached a web host whose
clock runs ahead of the one still answering the first attempt took that live attempt for abandoned, and two
submissions came of one message.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from grader.extensions import db
from grader.models import database_now
from grader.models.lms import LmsIntegration, LmsWebhookReceipt

log = logging.getLogger(__name__)

RECEIPT_RETENTION = timedelta(days=30)
# A receipt still unanswered after this long belongs to a request that died midway: it may be taken over.
STALE_RECEIPT = timedelta(minutes=2)


@dataclass
class Claim:
    """What a request carrying a webhook id may do: own it (`receipt`; a new one, or an abandoned attempt's taken
    over), replay the stored answer (`answer`), or neither while another request owns it."""

    receipt: LmsWebhookReceipt | None = None
    answer: tuple[int, dict[str, Any]] | None = None

    @property
    def in_progress(self) -> bool:
        return self.receipt is None and self.answer is None


def claim(integration: LmsIntegration, webhook_id: str) -> Claim:
    """Become the one request answering `webhook_id` for `integration`, or learn why not (committed)."""
    receipt = db.session.scalar(
        select(LmsWebhookReceipt).where(
            LmsWebhookReceipt.integration_id == integration.id, LmsWebhookReceipt.webhook_id == webhook_id
        )
    )
    now = database_now(db.session)
    if receipt is None:
        receipt = LmsWebhookReceipt(integration_id=integration.id, webhook_id=webhook_id, received_at=now)
        db.session.add(receipt)
        try:
            db.session.commit()  # the unique (integration, webhook id) makes exactly one request the owner
        except IntegrityError:
            db.session.rollback()
            return Claim()
        return Claim(receipt=receipt)
    if receipt.status_code is not None and receipt.response is not None:
        return Claim(answer=(receipt.status_code, receipt.response))
    if now - receipt.received_at < STALE_RECEIPT:
        return Claim()
    log.warning("webhook %s: taking over an attempt abandoned since %s", receipt.webhook_id, receipt.received_at)
    since = receipt.received_at
    # Conditional, so that of two retries arriving together only one takes the abandoned attempt over.
    taken = db.session.execute(
        update(LmsWebhookReceipt)
        .where(LmsWebhookReceipt.id == receipt.id, LmsWebhookReceipt.received_at == since)
        .values(received_at=now)
    ).rowcount
    db.session.commit()
    return Claim(receipt=receipt) if taken else Claim()


def answered(receipt: LmsWebhookReceipt, status: int, answer: dict[str, Any], submission_id: int | None) -> None:
    """Store the answer every later delivery of this webhook id gets (a commit of its own, after the
    submission's: an attempt that dies between the two is taken over by a later retry, which finds that
    submission by `submission_key`)."""
    receipt.submission_id = submission_id
    receipt.status_code, receipt.response = status, answer
    db.session.commit()


def forget(receipt: LmsWebhookReceipt) -> None:
    """Drop an owner's receipt without an answer (a transient failure), so that the LMS's retry starts over."""
    db.session.rollback()
    db.session.execute(delete(LmsWebhookReceipt).where(LmsWebhookReceipt.id == receipt.id))
    db.session.commit()


def submission_key(integration: LmsIntegration, webhook_id: str) -> str:
    """The idempotency key a message's submission is stored with (`grader.services.submissions.submit`), so an
    attempt that takes over a dead one finds the submission it stored, if it got that far.

    Matched by key, not by time: a submission counts as made when its bytes arrived, before its attempt claimed
    the message, so "stored since the claim" missed it and one message made two submissions. The key holds a
    space, which no `Idempotency-Key` a client sends can (`upload_key`): a student's own keys never meet it.
    """
    return f"lms {integration.id} {hashlib.sha256(webhook_id.encode()).hexdigest()}"


def purge_receipts(older_than: timedelta = RECEIPT_RETENTION) -> int:
    """Delete replay records older than `older_than`; returns how many."""
    done = db.session.execute(
        delete(LmsWebhookReceipt).where(LmsWebhookReceipt.received_at < database_now(db.session) - older_than)
    ).rowcount
    db.session.commit()
    return int(done or 0)
