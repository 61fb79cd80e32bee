"""The data model. Importing this package registers every table on `db.metadata` (Alembic relies on it)."""

# Imported for their side effect: the LMS, periodic-job and regrade tables join the metadata.
import grader.models.lms
import grader.models.periodic
import grader.models.regrades  # noqa: F401
from grader.models.accounts import COURSE_ROLES, USER_ROLES, Course, Enrollment, User
from grader.models.assignments import SCORE_POLICIES, Assignment, Deliverable
from grader.models.grading import (
    FINISHED,
    QUEUES,
    STATUSES,
    DeliverableScore,
    GradingRun,
    Submission,
    SubmissionFile,
    TestResult,
)
from grader.models.policy import Extension
from grader.models.types import database_now, utcnow

__all__ = [
    "COURSE_ROLES",
    "FINISHED",
    "QUEUES",
    "SCORE_POLICIES",
    "STATUSES",
    "USER_ROLES",
    "Assignment",
    "Course",
    "Deliverable",
    "DeliverableScore",
    "Enrollment",
    "Extension",
    "GradingRun",
    "Submission",
    "SubmissionFile",
    "TestResult",
    "User",
    "database_now",
    "utcnow",
]
