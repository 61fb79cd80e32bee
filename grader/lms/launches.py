"""What an LTI 1.3 launch records: the platform user matched to an account (by the platform's `sub`, then by
email, else a new one), their enrolment with the role the platform gives, the link's assignment, and the AGS
line item that scores are published to after grading (`grader.lms.ags`).

No HTTP here: `grader.lms.lti` validates the launch (PyLTI1p3) and hands over the validated claims.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from grader.extensions import db
from grader.models import Assignment, User
from grader.models.lms import LtiDeployment, LtiIdentity, LtiLineItem
from grader.services.accounts import ensure_enrollment, user_with_email

CLAIM = "https://purl.imsglobal.org/spec/lti/claim/"
AGS_CLAIM = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
SCORE_SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"


def record_launch(deployment: LtiDeployment, claims: dict[str, Any], role: str) -> tuple[User, Assignment | None]:
    """The launching user (enrolled in the deployment's course with `role`) and the assignment the link opens,
    if it names one the course has; committed."""
    user = launch_user(deployment, claims)
    # The platform is authoritative for the course role on each launch.
    ensure_enrollment(user, deployment.course, role)
    assignment = launch_assignment(deployment, claims)
    if assignment is not None:
        remember_line_item(deployment, assignment, claims)
    db.session.commit()
    return user, assignment


def launch_user(deployment: LtiDeployment, claims: dict[str, Any]) -> User:
    """The user behind the platform's `sub`: known identity, else an account with the same email, else new."""
    sub = str(claims["sub"])
    identity = db.session.scalar(
        select(LtiIdentity).where(
            LtiIdentity.registration_id == deployment.registration_id, LtiIdentity.sub == sub
        )
    )
    if identity is not None:
        return identity.user
    email = str(claims.get("email") or "").strip().lower()
    # The platform is registered by an administrator and signs the claim: its email is trusted for linking.
    user = user_with_email(email) if email else None
    if user is None:
        host = deployment.registration.issuer.split("//")[-1].split("/")[0].split(":")[0] or "lti"
        user = User(email=email or f"{sub}@{host}.lti.invalid", name=str(claims.get("name") or "")[:200])
        db.session.add(user)
    db.session.add(LtiIdentity(registration_id=deployment.registration_id, sub=sub, user=user))
    db.session.flush()
    return user


def launch_assignment(deployment: LtiDeployment, claims: dict[str, Any]) -> Assignment | None:
    """The assignment this link opens: custom parameter `assignment`, else the course's only assignment."""
    custom = claims.get(CLAIM + "custom") or {}
    slug = custom.get("assignment") if isinstance(custom, dict) else None
    query = select(Assignment).where(Assignment.course_id == deployment.course_id)
    if slug:
        return db.session.scalar(query.where(Assignment.slug == str(slug)))
    rows = db.session.scalars(query.limit(2)).all()
    return rows[0] if len(rows) == 1 else None


def remember_line_item(deployment: LtiDeployment, assignment: Assignment, claims: dict[str, Any]) -> None:
    """Remember the launch's AGS line item (if it grants the score scope) for this assignment's scores."""
    endpoint = claims.get(AGS_CLAIM) or {}
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
    item.context_id = (claims.get(CLAIM + "context") or {}).get("id")
    item.resource_link_id = (claims.get(CLAIM + "resource_link") or {}).get("id")
