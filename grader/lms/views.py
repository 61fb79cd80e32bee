"""The instructor's page for an LMS integration: the delivery log (every attempt) and a redeliver button."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from grader.auth.identity import auth_method
from grader.auth.permissions import caller, require_instructor
from grader.errors import NotFound
from grader.extensions import csrf, db
from grader.lms.integrations import describe, find_integration
from grader.lms.outbound import redeliver
from grader.models.lms import LmsDelivery

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
    rows = db.session.scalars(
        select(LmsDelivery)
        .where(LmsDelivery.integration_id == integration.id)
        .order_by(LmsDelivery.created_at.desc(), LmsDelivery.id.desc())
        .limit(PAGE_SIZE)
    ).all()
    return render_template(
        "lms/deliveries.html", integration=integration, info=describe(integration), deliveries=rows
    )


@bp.post("/<name>/deliveries/<int:delivery_id>/redeliver")
def redeliver_view(name: str, delivery_id: int) -> Response:
    """Send a delivery again now (same event id, so the LMS can tell it is the same event)."""
    integration = find_integration(name)
    require_instructor(caller(), integration.course)
    delivery = db.session.get(LmsDelivery, delivery_id)
    if delivery is None or delivery.integration_id != integration.id:
        raise NotFound(f"no delivery {delivery_id} for {name}")
    redeliver(delivery)
    flash(f"Redelivery of {delivery.event_id} queued.", "info")
    return redirect(url_for("lms.deliveries", name=name))
