"""Regrading: queue new, unpublished runs; preview before → after per student and deliverable; publish on
confirmation (or discard). Students and the gradebook see nothing of a regrade until it is published."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from grader.database import db
from grader.errors import Conflict, ServiceError, Unavailable
from grader.models import FINISHED, Assignment, DeliverableScore, GradingRun, Submission, User, database_now, utcnow
from grader.models.regrades import Regrade, RegradeItem
from grader.services.assignments import apply_manifest, load_manifest
from grader.services.scores import choose_counted, counted
from grader.services.submissions import enqueue
from grader.signals import notify, record_outbox, submission_graded
from worker.engine.errors import AssignmentError, UsageError

log = logging.getLogger(__name__)


def start(assignment: Assignment, user: User, submission: Submission | None = None) -> Regrade:
    """Queue a new run for one submission, or for every finished submission of the assignment.

    The assignment is first refreshed from its pack on disk, so the new runs use the tests as they are now.
    An open regrade that covers the same submissions is discarded: only the newest can be published.
    """
    from_version = assignment.version
    try:
        apply_manifest(assignment, load_manifest(assignment.slug))
    except (AssignmentError, UsageError) as exc:
        # A half-edited pack must not be graded: say what is wrong instead of queueing doomed runs.
        db.session.rollback()
        raise Conflict(f"the assignment's tests on disk cannot be loaded, so nothing was regraded: {exc}") from exc
    if submission is not None:
        if submission.assignment_id != assignment.id:
            raise ServiceError("that submission belongs to another assignment")
        if submission.status not in FINISHED:
            raise Conflict("this submission is still being graded; regrade it once it has finished")
        targets = [submission]
    else:
        targets = list(
            db.session.scalars(
                select(Submission)
                .where(Submission.assignment_id == assignment.id, Submission.status.in_(FINISHED))
                .order_by(Submission.id)
            )
        )
        if not targets:
            raise Conflict("there are no graded submissions to regrade yet")
    replaced = _overlapping(assignment, {s.id for s in targets})
    regrade = Regrade(
        assignment=assignment,
        scope="submission" if submission is not None else "assignment",
        from_version=from_version,
        to_version=assignment.version,
        requested_by=user,
    )
    db.session.add(regrade)
    db.session.flush()  # (its id, which the regrades it replaces name)
    for other in replaced:
        _close(other, "discarded", user)
        other.replaced_by_id = regrade.id
    numbers = dict(
        db.session.execute(
            select(GradingRun.submission_id, func.max(GradingRun.number))
            .where(GradingRun.submission_id.in_([s.id for s in targets]))
            .group_by(GradingRun.submission_id)
        ).all()
    )
    now = database_now(db.session)  # the clock its start (`started_at`) is judged by: the queue wait is one clock's
    for target in targets:
        run = GradingRun(number=int(numbers.get(target.id) or 0) + 1, published=False, queue=assignment.queue,
                         queued_at=now)
        target.runs.append(run)
        regrade.items.append(RegradeItem(submission=target, before_run=target.published_run, after_run=run))
    db.session.commit()
    _enqueue_all(regrade)
    return regrade


def _overlapping(assignment: Assignment, submission_ids: set[int]) -> list[Regrade]:
    """The assignment's open regrades that include any of these submissions (a new one over them replaces them)."""
    open_ones = db.session.scalars(
        select(Regrade).where(Regrade.assignment_id == assignment.id, Regrade.state == "open")
    ).all()
    return [other for other in open_ones if any(item.submission_id in submission_ids for item in other.items)]


def _enqueue_all(regrade: Regrade) -> None:
    """Send every new run to the queue; if the broker fails, end the rest in error and say so."""
    for index, item in enumerate(regrade.items):
        try:
            enqueue(item.after_run)
        except Exception as exc:
            log.exception("could not queue regrade %s", regrade.id)
            for rest in regrade.items[index:]:
                rest.after_run.status = "error"
                rest.after_run.message = "the grading queue was unavailable"
                rest.after_run.finished_at = database_now(db.session)
            db.session.commit()
            reason = f"the grading queue is unavailable ({type(exc).__name__}); try again later"
            raise Unavailable(reason) from exc


def _close(regrade: Regrade, state: str, user: User) -> None:
    regrade.state = state
    regrade.decided_by = user
    regrade.decided_at = utcnow()


@dataclass
class Progress:
    """How far the regrade's runs have got."""

    counts: dict[str, int]

    @property
    def total(self) -> int:
        """Runs in the regrade."""
        return sum(self.counts.values())

    @property
    def finished(self) -> int:
        """Runs that are graded or ended in error."""
        return self.counts["graded"] + self.counts["error"]

    @property
    def done(self) -> bool:
        """Whether every run has finished."""
        return self.finished == self.total


def progress(regrade: Regrade) -> Progress:
    """Counts of the new runs by status."""
    counts = {"queued": 0, "running": 0, "graded": 0, "error": 0}
    for item in regrade.items:
        counts[item.after_run.status] = counts.get(item.after_run.status, 0) + 1
    return Progress(counts)


@dataclass
class Change:
    """One student's counted score before and after the regrade: total and per deliverable."""

    user: User
    before_submission: int | None
    after_submission: int | None
    before: float | None
    after: float | None
    deliverables: list[tuple[str, float | None, float | None]] = field(default_factory=list)
    pending: bool = False  # some of this student's submissions are still being regraded

    @property
    def changed(self) -> bool:
        """Whether publishing changes anything this student sees."""
        return self.before != self.after or any(b != a for _, b, a in self.deliverables)

    @property
    def delta(self) -> float | None:
        """after minus before, when both exist."""
        if self.before is None or self.after is None:
            return None
        return self.after - self.before


Pair = tuple[Submission, GradingRun]


def preview(regrade: Regrade) -> list[Change]:
    """Per affected student: what counts now and what would count once the regrade is published."""
    assignment = regrade.assignment
    policy = assignment.score_policy
    users = {item.submission.user_id for item in regrade.items}
    current = db.session.execute(
        select(Submission, GradingRun)
        .join(GradingRun, GradingRun.submission_id == Submission.id)
        .where(
            Submission.assignment_id == assignment.id,
            Submission.user_id.in_(users),
            GradingRun.published.is_(True),
            GradingRun.status == "graded",
        )
    ).all()
    before_pairs = [(s, r) for s, r in current]
    replacement = {i.submission_id: i.after_run for i in regrade.items if i.after_run.status == "graded"}
    after_pairs = [(s, r) for s, r in before_pairs if s.id not in replacement]
    after_pairs += [(i.submission, replacement[i.submission_id]) for i in regrade.items
                    if i.submission_id in replacement]
    before, after = choose_counted(before_pairs, policy), choose_counted(after_pairs, policy)
    run_ids = {r.id for _, r in before.values()} | {r.id for _, r in after.values()}
    scores: dict[int, dict[int, float]] = {}
    if run_ids:
        for row in db.session.scalars(select(DeliverableScore).where(DeliverableScore.run_id.in_(run_ids))):
            scores.setdefault(row.run_id, {})[row.deliverable_id] = row.score
    deliverables = assignment.active_deliverables
    waiting = {i.submission.user_id for i in regrade.items if i.after_run.status not in FINISHED}
    changes = []
    for user in db.session.scalars(select(User).where(User.id.in_(users)).order_by(User.email)):
        old, new = before.get(user.id), after.get(user.id)
        changes.append(
            Change(
                user=user,
                before_submission=old[0].id if old else None,
                after_submission=new[0].id if new else None,
                # Counted scores: a regrade keeps each submission's late credit (decided at upload time).
                before=counted(*old) if old else None,
                after=counted(*new) if new else None,
                deliverables=[
                    (
                        d.title,
                        scores.get(old[1].id, {}).get(d.id) if old else None,
                        scores.get(new[1].id, {}).get(d.id) if new else None,
                    )
                    for d in deliverables
                ],
                pending=user.id in waiting,
            )
        )
    return changes


def publish(regrade: Regrade, user: User) -> int:
    """Make every successfully graded new run the published one; returns how many were published.

    Runs that ended in error are left unpublished (their submission keeps its old score). The older runs
    of a published submission are unpublished, so exactly one run per submission counts.
    """
    if regrade.state != "open":
        raise Conflict(f"this regrade was already {regrade.state}")
    if not progress(regrade).done:
        raise Conflict("some submissions are still being regraded; publish once all have finished")
    published = []
    for item in regrade.items:
        run = item.after_run
        if run.status != "graded":
            continue
        for other in item.submission.runs:
            other.published = other.id == run.id
        item.submission.status = run.status
        published.append(item)
    _close(regrade, "published", user)
    # The published scores just changed: the LMS's deliveries and publications commit with them.
    followups = [record_outbox(run=item.after_run, event="graded") for item in published]
    db.session.commit()
    for then in followups:
        then()
    for item in published:
        notify(submission_graded, submission_id=item.submission_id, run_id=item.after_run_id,
               published=True, regrade_id=regrade.id)
    return len(published)


def discard(regrade: Regrade, user: User) -> None:
    """Close the regrade without publishing; its runs stay unpublished."""
    if regrade.state != "open":
        raise Conflict(f"this regrade was already {regrade.state}")
    _close(regrade, "discarded", user)
    db.session.commit()


def summary(changes: list[Change]) -> dict[str, Any]:
    """Counts for the preview's headline: how many students go up, down, or stay the same."""
    up = sum(1 for c in changes if c.delta is not None and c.delta > 0)
    down = sum(1 for c in changes if c.delta is not None and c.delta < 0)
    other = sum(1 for c in changes if c.changed and (c.delta is None or c.delta == 0))
    pending = sum(1 for c in changes if c.pending and not c.changed)
    return {"students": len(changes), "up": up, "down": down, "other": other, "pending": pending,
            "unchanged": len(changes) - up - down - other - pending}
