"""The instructor's page for an LMS integration: the delivery log (every attempt) and a redeliver button."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from grader.auth.identity import auth_method
from grader.auth.permissions import caller, require_instructor
from grader.converters import query_id
from grader.extensions import csrf
from grader.lms.integrations import describe, find_integration
from grader.lms.outbound import delivery_counts, find_delivery, recent_deliveries, redeliver
from grader.models.lms import DELIVERY_STATUSES

bp = Blueprint("lms", __name__, url_prefix="/lms")
# Exempt from the blanket check so API-token scripts can redeliver; browser sessions are checked below.
csrf.exempt(bp)

PAGE_SIZE = 100


@bp.before_request
def _csrf_for_sessions() -> None:
    """A session caller that changes something must prove intent with a CSRF token (as in the API)."""
    if request.method == "POST" and auth_method() == "session":
        csrf.protect()


@bp.get("/<name>/deliveries")
def deliveries(name: str) -> str:
    """Integration `name`'s deliveries, newest first, each with its attempts, a page at a time and optionally
    only those of one status (instructors of its course). An unknown `?status=` shows every status, and an
    `?after=` that is not one of the integration's deliveries the newest page, as the other pages' lists forgive
    a stale or edited link."""
    integration = find_integration(name)
    require_instructor(caller(), integration.course)
    status = request.args.get("status")
    status = status if status in DELIVERY_STATUSES else None
    page = recent_deliveries(integration, PAGE_SIZE, query_id(request.args.get("after")), status)
    return render_template(
        "lms/deliveries.html", integration=integration, info=describe(integration), page=page, status=status,
        statuses=DELIVERY_STATUSES, counts=delivery_counts(integration),
    )


@bp.post("/<name>/deliveries/<int:delivery_id>/redeliver")
def redeliver_view(name: str, delivery_id: int) -> Response:
    """Send a delivery again now (same event id, so the LMS can tell it is the same event)."""
    integration = find_integration(name)
    require_instructor(caller(), integration.course)
    delivery = find_delivery(integration, delivery_id)
    redeliver(delivery)
    flash(f"Redelivery of {delivery.event_id} queued.", "info")
    return redirect(url_for("lms.deliveries", name=name))
