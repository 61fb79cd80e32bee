"""Assignment routes: list, describe, and the instructors' scores."""

from __future__ import annotations

from typing import Any

from flask import current_app, request

from grader.api import bp
from grader.api import schemas as s
from grader.api.openapi import operation
from grader.auth.permissions import caller, course_role, require_member, taught_assignment
from grader.errors import ServiceError
from grader.models import SCORE_POLICIES, Assignment
from grader.services.assignments import find_assignment
from grader.services.deadlines import course_policy, standing
from grader.services.queries import visible_assignments
from grader.services.scores import gradebook


def _describe(assignment: Assignment) -> dict[str, Any]:
    """The assignment, with the policy in force for the caller (a student's own, extension included)."""
    user = caller()
    doc = {**assignment.summary(), "max_upload_bytes": current_app.config["GRADER_MAX_UPLOAD_BYTES"]}
    if course_role(user, assignment.course) == "student":
        doc["standing"] = standing(assignment, user.id)
        doc["policy"] = doc["standing"]["policy"]
    else:
        doc["policy"] = course_policy(assignment).to_dict()
    return doc


@bp.get("/me")
@operation("account", "getMe", {200: s.Me}, (401,))
def me() -> dict[str, Any]:
    """Who the caller is, and their courses."""
    user = caller()
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "external_id": user.external_id,
        "role": user.role,
        "courses": [{"code": e.course.code, "role": e.role} for e in user.enrollments],
    }


@bp.get("/assignments")
@operation("assignments", "listAssignments", {200: s.AssignmentList}, (401,))
def list_assignments() -> dict[str, Any]:
    """Assignments of the caller's courses (every assignment for admins)."""
    user = caller()
    return {"assignments": [_describe(a) for a in visible_assignments(user)]}


@bp.get("/assignments/<assignment_id>")
@operation("assignments", "getAssignment", {200: s.Assignment}, (401, 403, 404))
def get_assignment(assignment_id: str) -> dict[str, Any]:
    """What an upload must look like (file names, size limit) and what is scored."""
    user = caller()
    assignment = find_assignment(assignment_id)
    require_member(user, assignment.course)
    return _describe(assignment)


@bp.get("/assignments/<assignment_id>/scores")
@operation("assignments", "getScores", {200: s.Scores}, (400, 401, 403, 404), query=s.ScoresQuery,
           invalid_code="bad_policy")
def get_scores(assignment_id: str) -> dict[str, Any]:
    """The gradebook: per student (email, external id), per deliverable scores. Instructors of the course only."""
    assignment = taught_assignment(assignment_id)
    policy = request.args.get("policy")
    if policy is not None and policy not in SCORE_POLICIES:
        raise ServiceError(f"policy must be one of {', '.join(SCORE_POLICIES)}", code="bad_policy")
    return gradebook(assignment, policy)
