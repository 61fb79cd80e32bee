"""The instructor's page for an LMS integration: the delivery log (every attempt) and a redeliver button."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from grader.auth.identity import auth_method
from grader.auth.permissions import caller, require_instructor
from grader.extensions import csrf
from grader.lms.integrations import describe, find_integration
from grader.lms.outbound import find_delivery, recent_deliveries, redeliver

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
    """The newest deliveries of integration `name`, each with its attempts (instructors of its course)."""
    integration = find_integration(name)
    require_instructor(caller(), integration.course)
    rows = recent_deliveries(integration, PAGE_SIZE)
    return render_template(
        "lms/deliveries.html", integration=integration, info=describe(integration), deliveries=rows
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
