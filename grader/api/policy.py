"""Course policy routes: the policy in force, the offering's override, and per-student extensions."""

from __future__ import annotations

from typing import Any

from flask import request

from grader.api import bp, json_object
from grader.api import schemas as s
from grader.api.openapi import operation
from grader.auth.permissions import caller, require_instructor, require_member, taught_assignment
from grader.errors import NotFound
from grader.models import Assignment
from grader.models.policy import Extension
from grader.services import policy as policies
from grader.services.accounts import normalize_email
from grader.services.assignments import find_assignment
from grader.services.deadlines import course_policy, standing


def extension_doc(extension: Extension) -> dict[str, Any]:
    """An extension as the API shows it."""
    return {"email": extension.user.email, "due": extension.due_at.isoformat(), "reason": extension.reason}


def policy_doc(assignment: Assignment) -> dict[str, Any]:
    """The policy of an assignment as its instructors see it."""
    return {
        "assignment": assignment.slug,
        "policy": course_policy(assignment).to_dict(),
        "manifest": dict(assignment.policy or {}),
        "override": assignment.policy_override,
        "grace_days": assignment.course.grace_days or 0,
        "extensions": [extension_doc(e) for e in policies.extensions(assignment)],
    }


@bp.get("/assignments/<assignment_id>/standing")
@operation("policy", "getStanding", {200: s.Standing}, (400, 401, 403, 404), query=s.StandingQuery)
def get_standing(assignment_id: str) -> dict[str, Any]:
    """Where the caller stands: may they upload now, at what credit, submissions and grace days left. Instructors
    read a student's with `?email=` (what the instructor's page of that student shows)."""
    user = caller()
    assignment = find_assignment(assignment_id)
    require_member(user, assignment.course)
    query: s.StandingQuery = request.context.query  # type: ignore[attr-defined]  (spectree's, as validated)
    if not query.email or normalize_email(query.email) == user.email:  # (an empty one is none, as on the list)
        return standing(assignment, user.id)
    require_instructor(user, assignment.course)
    return standing(assignment, policies.find_student(assignment, query.email).id)


@bp.get("/assignments/<assignment_id>/policy")
@operation("policy", "getPolicy", {200: s.PolicyInForce}, (401, 403, 404))
def get_policy(assignment_id: str) -> dict[str, Any]:
    """The policy in force, the manifest's, the offering's override, and every extension (instructors)."""
    return policy_doc(taught_assignment(assignment_id))


@bp.put("/assignments/<assignment_id>/policy")
@operation("policy", "setPolicy", {200: s.PolicyInForce}, (400, 401, 403, 404), body=s.PolicyOverride,
           invalid_code="bad_policy")
def set_policy(assignment_id: str) -> dict[str, Any]:
    """Replace the offering's override of the manifest's policy (an empty object, `{}`: back to the manifest's)."""
    assignment = taught_assignment(assignment_id)
    body = json_object("the override ({} for the manifest's policy again)", "bad_policy")
    fields = {key: value for key, value in body.items() if value is not None}
    policies.set_override(assignment, fields)
    return policy_doc(assignment)


@bp.post("/assignments/<assignment_id>/extensions")
@operation("policy", "grantExtension", {200: s.ExtensionDoc}, (400, 401, 403, 404), body=s.ExtensionRequest,
           invalid_code="bad_extension")
def grant_extension(assignment_id: str) -> dict[str, Any]:
    """Give one student a new due date (`due`) or extra days (`days`); replaces an earlier extension."""
    assignment = taught_assignment(assignment_id)
    body = json_object("the extension", "bad_extension")
    student = policies.find_student(assignment, body.get("email", ""))
    extension = policies.grant_extension(assignment, student, due=body.get("due"), days=body.get("days"),
                                         reason=body.get("reason", ""), granted_by=caller())
    return extension_doc(extension)


@bp.delete("/assignments/<assignment_id>/extensions/<email>")
@operation("policy", "revokeExtension", {200: s.ExtensionList}, (401, 403, 404))
def revoke_extension(assignment_id: str, email: str) -> dict[str, Any]:
    """Take a student's extension back; the remaining extensions."""
    assignment = taught_assignment(assignment_id)
    student = policies.find_student(assignment, email)
    if not policies.revoke_extension(assignment, student):
        raise NotFound(f"{email} has no extension on {assignment.slug}")
    return {"extensions": [extension_doc(e) for e in policies.extensions(assignment)]}
