"""Course policy on the pages: the instructor's forms (the offering's override, extensions, the course's
grace days) and the helpers that show a student their dates, credit and what is left."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, request, url_for
from werkzeug.wrappers import Response

from grader.auth.identity import current_user
from grader.auth.permissions import caller, course_role, taught_assignment
from grader.instructor import bp, instructor_required
from grader.models import Assignment, Submission, User
from grader.services import policy as policies
from grader.services.deadlines import course_policy, standing
from grader.services.submissions import late_doc

FORM_FIELDS = ("release", "due", "late_penalty_per_day", "late_days", "hard_close", "max_submissions",
               "cooldown_minutes", "max_grace_days")


@bp.app_template_global()
def my_standing(assignment: Assignment) -> dict[str, Any] | None:
    """The logged-in student's standing on `assignment` (None for instructors and visitors)."""
    user = current_user()
    if user is None or course_role(user, assignment.course) != "student":
        return None
    return standing(assignment, user.id)


@bp.app_template_global()
def lateness(submission: Submission) -> dict[str, Any]:
    """The lateness stored with a submission, for its pages."""
    return late_doc(submission)


@bp.app_template_global()
def policy_form(assignment: Assignment) -> dict[str, Any]:
    """What the instructor's policy panel shows: the policy in force, the override's fields, extensions."""
    override = assignment.policy_override or {}
    return {"policy": course_policy(assignment).to_dict(), "override": override,
            "extensions": policies.extensions(assignment), "grace_days": assignment.course.grace_days or 0}


@bp.post("/assignments/<slug>/course-policy")
@instructor_required
def set_course_policy(slug: str) -> Response:
    """Override the manifest's policy for this offering (blank fields keep the manifest's values)."""
    found = taught_assignment(slug)
    policies.set_override(found, {name: request.form.get(name, "") for name in FORM_FIELDS})
    flash("The course policy is saved. It applies to uploads from now on; earlier ones keep their lateness.",
          "info")
    return redirect(url_for("dashboard.assignment", slug=slug) + "#policy")


@bp.post("/assignments/<slug>/extensions")
@instructor_required
def grant_extension(slug: str) -> Response:
    """Give one student a new due date or extra days."""
    found = taught_assignment(slug)
    student = policies.find_student(found, request.form.get("email", ""))
    extension = policies.grant_extension(found, student, due=request.form.get("due"),
                                         days=request.form.get("days"), reason=request.form.get("reason", ""),
                                         granted_by=caller())
    flash(f"{student.email} is now due {extension.due_at:%Y-%m-%d %H:%M} UTC.", "info")
    return redirect(_back(slug, student))


@bp.post("/assignments/<slug>/extensions/revoke")
@instructor_required
def revoke_extension(slug: str) -> Response:
    """Take a student's extension back."""
    found = taught_assignment(slug)
    student = policies.find_student(found, request.form.get("email", ""))
    policies.revoke_extension(found, student)
    flash(f"{student.email} is due with everyone again.", "info")
    return redirect(_back(slug, student))


def _back(slug: str, student: User) -> str:
    """Where an extension form leads back to: the page of that student when it was sent from there (`back` names
    the page, never a URL: no redirect a form could point elsewhere), else the assignment's policy panel."""
    if request.form.get("back") == "student":
        return url_for("dashboard.student", slug=slug, user_id=student.id) + "#standing"
    return url_for("dashboard.assignment", slug=slug) + "#policy"


@bp.post("/assignments/<slug>/grace-days")
@instructor_required
def set_grace_days(slug: str) -> Response:
    """Set the course's grace-day budget per student."""
    found = taught_assignment(slug)
    budget = policies.set_grace_days(found.course, request.form.get("grace_days", ""))
    flash(f"Each student of {found.course.code} has {budget} grace days in all.", "info")
    return redirect(url_for("dashboard.assignment", slug=slug) + "#policy")
