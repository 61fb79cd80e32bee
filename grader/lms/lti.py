"""LTI 1.3 tool endpoints: OIDC login initiation, launch, and the tool's JWKS.

The launch logs the platform user in (created or matched by the platform's `sub`, then by email), enrolls them
in the deployment's course with the role their LTI roles give, and remembers the AGS line item so scores can
be published back after grading (`grader.lms.ags`).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, jsonify, render_template, url_for
from pylti1p3.contrib.flask import FlaskMessageLaunch, FlaskOIDCLogin, FlaskRequest
from pylti1p3.exception import LtiException, OIDCException
from sqlalchemy import select

from grader.auth.identity import login_user
from grader.extensions import csrf, db
from grader.lms.lti_conf import DbLaunchDataStorage, ToolConf, find_deployment_row, http_session
from grader.models import Assignment, User
from grader.models.lms import LtiDeployment, LtiIdentity, LtiLineItem
from grader.services.accounts import ensure_enrollment

log = logging.getLogger(__name__)

bp = Blueprint("lti", __name__, url_prefix="/lti")
# Platforms POST here cross-site by design; the id_token's signature, state cookie and nonce protect it.
csrf.exempt(bp)

CLAIM = "https://purl.imsglobal.org/spec/lti/claim/"
AGS_CLAIM = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
SCORE_SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"


def _error(message: str, status: int = 400) -> tuple[str, int]:
    return render_template("lms/lti_error.html", message=message), status


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """OIDC third-party login initiation: redirect the browser to the platform's auth endpoint."""
    oidc = FlaskOIDCLogin(FlaskRequest(), ToolConf(), launch_data_storage=DbLaunchDataStorage())
    try:
        return oidc.redirect(url_for("lti.launch", _external=True))
    except (OIDCException, LtiException) as exc:
        log.info("LTI login refused: %s", exc)
        return _error(f"This LTI login cannot be accepted: {exc}")


@bp.post("/launch")
def launch() -> Any:
    """Validate the platform's id_token, log the user into the course, show where to go next."""
    with http_session() as http:
        try:
            # The constructor already refuses a browser without the login's session cookie.
            message = FlaskMessageLaunch(
                FlaskRequest(), ToolConf(), launch_data_storage=DbLaunchDataStorage(), requests_session=http
            )
            data = message.get_launch_data()
        except LtiException as exc:
            log.info("LTI launch refused: %s", exc)
            return _error(f"This LTI launch cannot be accepted: {exc}", 401)
    deployment = find_deployment_row(data["iss"], message.get_client_id(), data[CLAIM + "deployment_id"])
    if deployment is None:  # validated above; only a concurrent `lti remove` gets here
        return _error("This deployment is no longer registered.", 401)
    role = (
        "instructor"
        if (message.check_teacher_access() or message.check_teaching_assistant_access())
        else "student"
    )
    user = _user(deployment, data)
    _enroll(user, deployment, role)
    assignment = _assignment(deployment, data)
    if assignment is not None:
        _remember_line_item(deployment, assignment, data)
    db.session.commit()
    login_user(user)
    return render_template(
        "lms/launched.html", user=user, course=deployment.course, role=role, assignment=assignment
    )


@bp.get("/jwks")
def jwks() -> Response:
    """The tool's public keys (JWKS), for platforms verifying our service-token client assertions."""
    return jsonify(ToolConf().get_jwks())


def _user(deployment: LtiDeployment, data: dict[str, Any]) -> User:
    """The user behind the platform's `sub`: known identity, else an account with the same email, else new."""
    sub = str(data["sub"])
    identity = db.session.scalar(
        select(LtiIdentity).where(
            LtiIdentity.registration_id == deployment.registration_id, LtiIdentity.sub == sub
        )
    )
    if identity is not None:
        return identity.user
    email = str(data.get("email") or "").strip().lower()
    # The platform is registered by an administrator and signs the claim: its email is trusted for linking.
    user = db.session.scalar(select(User).where(User.email == email)) if email else None
    if user is None:
        host = deployment.registration.issuer.split("//")[-1].split("/")[0].split(":")[0] or "lti"
        user = User(email=email or f"{sub}@{host}.lti.invalid", name=str(data.get("name") or "")[:200])
        db.session.add(user)
    db.session.add(LtiIdentity(registration_id=deployment.registration_id, sub=sub, user=user))
    db.session.flush()
    return user


def _enroll(user: User, deployment: LtiDeployment, role: str) -> None:
    """Enroll in the deployment's course; the platform is authoritative for the course role on each launch."""
    ensure_enrollment(user, deployment.course, role)


def _assignment(deployment: LtiDeployment, data: dict[str, Any]) -> Assignment | None:
    """The assignment this link opens: custom parameter `assignment`, else the course's only assignment."""
    custom = data.get(CLAIM + "custom") or {}
    slug = custom.get("assignment") if isinstance(custom, dict) else None
    query = select(Assignment).where(Assignment.course_id == deployment.course_id)
    if slug:
        return db.session.scalar(query.where(Assignment.slug == str(slug)))
    rows = db.session.scalars(query.limit(2)).all()
    return rows[0] if len(rows) == 1 else None


def _remember_line_item(deployment: LtiDeployment, assignment: Assignment, data: dict[str, Any]) -> None:
    """Remember the launch's AGS line item (if it grants the score scope) for this assignment's scores."""
    endpoint = data.get(AGS_CLAIM) or {}
    url, scopes = endpoint.get("lineitem"), list(endpoint.get("scope") or [])
    if not url or SCORE_SCOPE not in scopes:
        return
    item = db.session.scalar(
        select(LtiLineItem).where(LtiLineItem.deployment_id == deployment.id, LtiLineItem.url == url)
    )
    if item is None:
        item = LtiLineItem(deployment_id=deployment.id, url=url)
        db.session.add(item)
    item.assignment_id, item.scopes, item.lineitems_url = assignment.id, scopes, endpoint.get("lineitems")
    item.context_id = (data.get(CLAIM + "context") or {}).get("id")
    item.resource_link_id = (data.get(CLAIM + "resource_link") or {}).get("id")
