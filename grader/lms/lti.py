"""LTI 1.3 tool endpoints: OIDC login initiation, launch, and the tool's JWKS.

The launch logs the platform user in (created or matched by the platform's `sub`, then by email), enrolls them
in the deployment's course with the role their LTI roles give, and remembers the AGS line item so scores can
be published back after grading (`grader.lms.ags`); what it records is `grader.lms.launches`.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, jsonify, render_template, url_for
from pylti1p3.contrib.flask import FlaskMessageLaunch, FlaskOIDCLogin, FlaskRequest
from pylti1p3.exception import LtiException, OIDCException

from grader.auth.identity import login_user
from grader.extensions import csrf
from grader.lms.launches import CLAIM, record_launch
from grader.lms.lti_conf import DbLaunchDataStorage, ToolConf, find_deployment_row, http_session

log = logging.getLogger(__name__)

bp = Blueprint("lti", __name__, url_prefix="/lti")
# Platforms POST here cross-site by design; the id_token's signature, state cookie and nonce protect it.
csrf.exempt(bp)


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
    user, assignment = record_launch(deployment, data, role)
    login_user(user)
    return render_template(
        "lms/launched.html", user=user, course=deployment.course, role=role, assignment=assignment
    )


@bp.get("/jwks")
def jwks() -> Response:
    """The tool's public keys (JWKS), for platforms verifying our service-token client assertions."""
    return jsonify(ToolConf().get_jwks())
