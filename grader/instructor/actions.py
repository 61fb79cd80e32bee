"""Instructor actions (POST, CSRF-protected forms), and the JSON that keeps open pages current while grading
runs."""

from __future__ import annotations

import hashlib
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from grader.auth.permissions import caller, require_instructor, taught_assignment, taught_regrade
from grader.instructor import bp, instructor_required
from grader.instructor.stats import overview
from grader.services import regrades
from grader.services.assignments import set_score_policy
from grader.services.queries import open_regrade_ids, regrade_run_statuses, run_counts
from grader.services.queue import queue_state
from grader.services.submissions import find_submission

POLICY_WORDS = {"latest": "the latest submission", "best": "the best submission"}


@bp.post("/assignments/<slug>/policy")
@instructor_required
def set_policy(slug: str) -> Response:
    """Choose which submission counts for this assignment: the latest or the best."""
    found = taught_assignment(slug)
    policy = request.form.get("policy", "")
    set_score_policy(found, policy)
    flash(f"The gradebook now counts {POLICY_WORDS[policy]} of each student.", "info")
    return redirect(url_for("dashboard.assignment", slug=slug))


@bp.post("/assignments/<slug>/regrades")
@instructor_required
def regrade_all(slug: str) -> Response:
    """Regrade every finished submission of the assignment with the tests as they are now (preview first)."""
    found = taught_assignment(slug)
    started = regrades.start(found, caller())
    count = len(started.items)
    flash(f"Regrading {count} submissions. Nothing changes for students until you publish.", "info")
    return redirect(url_for("dashboard.regrade_page", regrade_id=started.id))


@bp.post("/submissions/<int:submission_id>/regrade")
@instructor_required
def regrade_one(submission_id: int) -> Response:
    """Regrade one submission (preview first)."""
    found = find_submission(submission_id)
    require_instructor(caller(), found.assignment.course)
    started = regrades.start(found.assignment, caller(), found)
    flash(f"Regrading submission {found.id}. Nothing changes for the student until you publish.", "info")
    return redirect(url_for("dashboard.regrade_page", regrade_id=started.id))


@bp.get("/regrades/<int:regrade_id>")
@instructor_required
def regrade_page(regrade_id: int) -> str:
    """The regrade's progress and its before → after preview per student and deliverable."""
    found = taught_regrade(regrade_id)
    changes = regrades.preview(found)
    show = request.args.get("show", "changed" if found.scope == "assignment" else "all")
    shown = [c for c in changes if c.changed] if show == "changed" else changes
    errors = [i for i in found.items if i.after_run.status == "error"]
    return render_template(
        "instructor/regrade.html", r=found, a=found.assignment, progress=regrades.progress(found),
        changes=shown, show=show, summary=regrades.summary(changes), errors=errors,
    )


@bp.post("/regrades/<int:regrade_id>/publish")
@instructor_required
def regrade_publish(regrade_id: int) -> Response:
    """Publish the regrade's new scores (the confirmation step: the form sits under the preview)."""
    found = taught_regrade(regrade_id)
    count = regrades.publish(found, caller())
    flash(f"Published {count} new {'score' if count == 1 else 'scores'}. Students see them now.", "info")
    return redirect(url_for("dashboard.assignment", slug=found.assignment.slug))


@bp.post("/regrades/<int:regrade_id>/discard")
@instructor_required
def regrade_discard(regrade_id: int) -> Response:
    """Close the regrade without changing any score."""
    found = taught_regrade(regrade_id)
    regrades.discard(found, caller())
    flash("Regrade discarded. No score changed.", "info")
    return redirect(url_for("dashboard.assignment", slug=found.assignment.slug))


def _stamp(*parts: Any) -> str:
    """A short fingerprint of what a page shows: when it changes, the page fetches itself again."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


@bp.get("/assignments/<slug>/live.json")
@instructor_required
def assignment_live(slug: str) -> dict[str, Any]:
    """Status counts, queue and a change stamp for the assignment page (polled while it is open)."""
    found = taught_assignment(slug)
    view = overview(found)
    queue = queue_state([found.id], ping=False)
    return {
        "stamp": _stamp(run_counts(found.id), view.counts, found.score_policy, found.version,
                        open_regrade_ids(found.id), view.total.scores),
        "counts": view.counts,
        "queue": queue.to_dict(),
        "graded_students": view.graded_students,
        "mean": view.total.mean,
        "median": view.total.median,
        "busy": view.counts["queued"] + view.counts["running"] > 0,
    }


@bp.get("/regrades/<int:regrade_id>/live.json")
@instructor_required
def regrade_live(regrade_id: int) -> dict[str, Any]:
    """The regrade's progress and a change stamp (polled by the preview page until every run finished)."""
    found = taught_regrade(regrade_id)
    state = regrades.progress(found)
    return {
        "stamp": _stamp(regrade_run_statuses(found.id), found.state),
        "counts": state.counts,
        "done": state.done,
        "state": found.state,
        "busy": not state.done and found.state == "open",
    }
