"""The API's request and response models, declared once: they generate the OpenAPI document and validate.

pydantic v2 models, read by spectree (see `grader.api.openapi`). Response models describe what the views
return (the services build plain dicts); request models validate query strings and the LMS webhook body.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Visibility = Literal["visible", "hidden", "after_due_date"]
TestStatus = Literal["passed", "failed", "error", "timeout", "memory", "crashed", "hidden"]


class Model(BaseModel):
    """Base: documents every field a body may carry; extra keys are allowed (additive changes are compatible)."""

    model_config = ConfigDict(extra="allow")


class Error(Model):
    """Every refusal: a short machine-readable code and a human-readable reason."""

    error: str = Field(description="A short code, e.g. `not_found`, `invalid_upload`, `rate_limited`")
    detail: Any = Field(description="Why, in words (validation errors: a list of the problems)")


class Health(Model):
    """Liveness and dependencies."""

    status: Literal["ok", "error"]
    database: str = Field(description="`ok`, or why the database does not answer")
    broker: str = Field(description="`ok`, or why the broker does not answer")


class CourseRole(Model):
    """A course the caller is enrolled in."""

    code: str
    role: Literal["student", "instructor"]


class Me(Model):
    """The caller."""

    id: int
    email: str
    name: str
    external_id: str | None
    role: Literal["student", "instructor", "admin"]
    courses: list[CourseRole]


class DeliverableInfo(Model):
    """A scored part of an assignment."""

    id: str
    title: str
    max_score: float


class Assignment(Model):
    """What an upload must look like and what is scored."""

    id: str = Field(description="The assignment pack's id, e.g. `autograd`")
    title: str
    course: str
    files: list[str] = Field(description="The accepted file names, e.g. `solution.py`")
    max_score: float
    due: str | None = Field(description="ISO 8601 due date; after-due-date tests are shown after it")
    version: int
    deliverables: list[DeliverableInfo]
    max_upload_bytes: int


class AssignmentList(Model):
    """Assignments of the caller's courses."""

    assignments: list[Assignment]


class Queued(Model):
    """An accepted upload, waiting for a worker."""

    id: int
    status: Literal["queued"]
    url: str = Field(description="Where to poll the submission (also the `Location` header)")
    queue_position: int | None = Field(default=None, description="1 means next")


class FileInfo(Model):
    """The stored upload."""

    name: str
    size: int
    sha256: str


class SubmitterInfo(Model):
    """Who submitted."""

    email: str
    external_id: str | None


class Grading(Model):
    """The published grading run."""

    run: int
    attempt: int
    runner: str | None
    image: str | None
    assignment_version: int | None
    queued_at: str
    started_at: str | None
    finished_at: str | None


class TestResultDoc(Model):
    """One reference test's verdict (`hidden` with no output while the student may not see it)."""

    name: str
    status: TestStatus
    score: float
    max_score: float
    visibility: Visibility
    output: str


class DeliverableResultDoc(Model):
    """A deliverable's score and the tests behind it."""

    id: str
    title: str
    score: float
    max_score: float
    tests: list[TestResultDoc]


class Submission(Model):
    """A submission's status (queue position while queued) and, once graded, its result."""

    id: int
    url: str
    assignment: str
    status: Literal["queued", "running", "graded", "error"]
    submitted_at: str
    file: FileInfo
    user: SubmitterInfo
    queue_position: int | None = Field(default=None, description="While queued: 1 means next")
    grading: Grading | None = None
    score: float | None = None
    max_score: float | None = None
    message: str | None = None
    execution_time: float | None = None
    deliverables: list[DeliverableResultDoc] | None = None


class SubmissionList(Model):
    """Submissions, newest first."""

    submissions: list[Submission]


class StudentScores(Model):
    """One student's row of the gradebook."""

    email: str
    external_id: str | None
    name: str
    submissions: int
    submission_id: int | None
    submitted_at: str | None
    score: float | None
    max_score: float
    deliverables: dict[str, float | None]


class Scores(Model):
    """The gradebook: per student, per deliverable scores."""

    assignment: str
    course: str
    version: int
    policy: Literal["latest", "best"]
    max_score: float
    deliverables: list[DeliverableInfo]
    students: list[StudentScores]


class SubmissionsQuery(BaseModel):
    """Filters of the submissions list."""

    model_config = ConfigDict(extra="allow")

    email: str | None = Field(default=None, max_length=254, description="Instructors: one student's submissions")


class ScoresQuery(BaseModel):
    """Options of the gradebook."""

    model_config = ConfigDict(extra="allow")

    policy: Literal["latest", "best"] | None = Field(
        default=None, description="Which submission counts (default: the assignment's policy)")


class InboundUser(BaseModel):
    """The student, matched by `external_id` (created and enrolled when new)."""

    external_id: str = Field(min_length=1, max_length=255, pattern=r"\S")
    email: str = Field(max_length=254, pattern=r"^\S*@\S*$")
    name: str | None = None


class InboundSubmission(BaseModel):
    """The body of an LMS's signed submission webhook."""

    user: InboundUser
    assignment: str = Field(min_length=1, description="The assignment's id, e.g. `autograd`")
    files: dict[str, str] = Field(
        min_length=1, description='Exactly one file, e.g. `{"solution.py": "<base64>"}`',
        json_schema_extra={"additionalProperties": {"type": "string", "contentEncoding": "base64"}})


class InboundQueued(Model):
    """The LMS's submission, queued."""

    id: int
    status: Literal["queued"]
