"""Regrade routes (instructors): start one, list an assignment's, read one with its preview, publish or discard it
— what the dashboard's regrade pages do, for a script run after the tests changed."""

from __future__ import annotations

from typing import Any

from flask import request, url_for

from grader.api import bp, json_object
from grader.api import regrade_schemas as r
from grader.api.openapi import operation
from grader.auth.permissions import caller, taught_assignment, taught_regrade
from grader.errors import NotFound
from grader.models.regrades import Regrade
from grader.services import regrades
from grader.services.queries import regrades_of
from grader.services.submissions import find_submission


def regrade_url(regrade: Regrade) -> str:
    """Where the API serves `regrade`: its document's `url` and the start answer's Location."""
    return url_for("api.get_regrade", regrade_id=regrade.id, _external=True)


def regrade_info(regrade: Regrade, size: int, submission_id: int | None) -> dict[str, Any]:
    """A regrade as its list shows it: what it grades again (`size` submissions; for a regrade of one,
    `submission_id`), who started and decided it, and when."""
    return {
        "id": regrade.id,
        "url": regrade_url(regrade),
        "assignment": regrade.assignment.slug,
        "scope": regrade.scope,
        "submission": submission_id if regrade.scope == "submission" else None,
        "submissions": size,
        "state": regrade.state,
        "requested_by": regrade.requested_by.email if regrade.requested_by else None,
        "created_at": regrade.created_at.isoformat(),
        "from_version": regrade.from_version,
        "to_version": regrade.to_version,
        "decided_by": regrade.decided_by.email if regrade.decided_by else None,
        "decided_at": regrade.decided_at.isoformat() if regrade.decided_at else None,
        "replaced_by": regrade.replaced_by_id,
    }


def regrade_doc(regrade: Regrade, shown: r.RegradeQuery | None = None) -> dict[str, Any]:
    """A regrade with its progress and its preview (per student: the counted score now and once published), the
    page of students `shown` asks for (by default the first, of everyone)."""
    shown = shown or r.RegradeQuery()
    items = regrade.items
    progress = regrades.progress(regrade)
    changes = regrades.preview(regrade)
    doc = regrade_info(regrade, len(items), items[0].submission_id if items else None)
    doc["progress"] = {**progress.counts, "total": progress.total, "finished": progress.finished,
                       "done": progress.done}
    doc["summary"] = regrades.summary(changes)
    page, more = changes_page(changes, shown)
    doc["next"] = url_for("api.get_regrade", regrade_id=regrade.id, changes=shown.changes, limit=shown.limit,
                          after=page[-1].user.email, _external=True) if more else None
    doc["changes"] = [{
        "email": change.user.email,
        "external_id": change.user.external_id,
        "before": change.before,
        "after": change.after,
        "delta": change.delta,
        "changed": change.changed,
        "pending": change.pending,
        "before_submission": change.before_submission,
        "after_submission": change.after_submission,
        "deliverables": [{"title": title, "before": before, "after": after}
                         for title, before, after in change.deliverables],
    } for change in page]
    return doc


def changes_page(changes: list[regrades.Change], shown: r.RegradeQuery) -> tuple[list[regrades.Change], bool]:
    """The page of a preview's students that `shown` asks for, and whether more follow. In order of email as Python
    compares strings (the database's collation may not), so that `after` picks up exactly where a page ended."""
    wanted = sorted((c for c in changes if shown.changes == "all" or c.changed), key=lambda c: c.user.email)
    if shown.after is not None:
        wanted = [c for c in wanted if c.user.email > shown.after]
    return wanted[:shown.limit], len(wanted) > shown.limit


@bp.post("/assignments/<assignment_id>/regrades")
@operation("regrades", "startRegrade", {202: r.RegradeDoc}, (400, 401, 403, 404, 409), body=r.RegradeRequest,
           invalid_code="bad_regrade")
def start_regrade(assignment_id: str) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Grade again every finished submission of the assignment (`{}`) or one (`{"submission": id}`), with its
    tests as they are on disk now: 202, and where to follow it. Nothing a student sees changes until the regrade is
    published; an open regrade over any of the same submissions is discarded (only the newest can be published)."""
    assignment = taught_assignment(assignment_id)
    # A JSON object, even `{}` for all: a body sent as a form or as junk must not become "regrade everything".
    json_object("what to regrade ({} for every finished submission)", "bad_regrade")
    one = request.context.json.submission  # type: ignore[attr-defined]  (spectree's, as validated)
    submission = find_submission(one) if one is not None else None
    if submission is not None and submission.assignment_id != assignment.id:
        # As for an unknown one: that it exists elsewhere (perhaps in a course the caller does not teach) is not said.
        raise NotFound(f"no submission {one} of {assignment.slug}")
    started = regrades.start(assignment, caller(), submission)
    return regrade_doc(started), 202, {"Location": regrade_url(started)}


@bp.get("/assignments/<assignment_id>/regrades")
@operation("regrades", "listRegrades", {200: r.RegradeList}, (400, 401, 403, 404), query=r.RegradesQuery)
def list_regrades(assignment_id: str) -> dict[str, Any]:
    """The assignment's regrades, newest first, a page at a time (`next` is the next page's URL)."""
    assignment = taught_assignment(assignment_id)
    query: r.RegradesQuery = request.context.query  # type: ignore[attr-defined]  (spectree's, as validated)
    page = regrades_of(assignment.id, query.limit, query.after)
    following = None
    if page.older:
        following = url_for("api.list_regrades", assignment_id=assignment_id, limit=query.limit,
                            after=page.rows[-1].id, _external=True)
    return {"regrades": [regrade_info(row.regrade, row.size, row.submission_id) for row in page.rows],
            "next": following}


@bp.get("/regrades/<int:regrade_id>")
@operation("regrades", "getRegrade", {200: r.RegradeDoc}, (400, 401, 403, 404), query=r.RegradeQuery)
def get_regrade(regrade_id: int) -> dict[str, Any]:
    """A regrade: how far its runs have got, and what publishing it would change, per student and deliverable, a
    page of students at a time (`next` is the next page's URL; `summary` counts them all)."""
    found = taught_regrade(regrade_id)
    return regrade_doc(found, request.context.query)  # type: ignore[attr-defined]  (spectree's, as validated)


@bp.post("/regrades/<int:regrade_id>/publish")
@operation("regrades", "publishRegrade", {200: r.RegradePublished}, (400, 401, 403, 404, 409))
def publish_regrade(regrade_id: int) -> dict[str, Any]:
    """Make the new scores count, once every new run has finished (409 before, or once published or discarded).
    A submission whose new run ended in error keeps its old score."""
    found = taught_regrade(regrade_id)
    count = regrades.publish(found, caller())
    return {"published": count, "regrade": regrade_doc(found)}


@bp.post("/regrades/<int:regrade_id>/discard")
@operation("regrades", "discardRegrade", {200: r.RegradeDoc}, (400, 401, 403, 404, 409))
def discard_regrade(regrade_id: int) -> dict[str, Any]:
    """Close the regrade without changing any score (409 once published or discarded)."""
    found = taught_regrade(regrade_id)
    regrades.discard(found, caller())
    return regrade_doc(found)
