"""The API's request and response models, declared once: they generate the OpenAPI document and validate.

pydantic v2 models, read by spectree (see `grader.api.openapi`). Response models describe what the views
return (the services build plain dicts); request models validate query strings and the LMS webhook body.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from grader.models.types import MAX_ID
from grader.services.policy import MAXIMUM

Visibility = Literal["visible", "hidden", "after_due_date"]
TestStatus = Literal["passed", "failed", "error", "timeout", "memory", "crashed", "hidden"]
SubmissionStatus = Literal["queued", "running", "graded", "error"]
# A worker may pick an upload up (or even finish it) before the 202 is written: the answer to an upload says
# where the submission is now, and "queued" is only the usual case.
PAGE_SIZE, MAX_PAGE_SIZE = 100, 500  # submissions per page of a list: by default, and at most
ACCEPTED_STATUS = "Where it is now: usually `queued`; `running` or `graded` when a worker was faster than this answer"


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
    policy: PolicyDoc = Field(description="The course policy in force (the caller's own, extension included)")
    standing: Standing | None = Field(default=None, description="Students: where the caller stands")


class LateStepDoc(Model):
    """Work until `until` earns `credit` percent."""

    until: str | None
    credit: float


class PolicyDoc(Model):
    """Release, due date, late steps, hard close and limits (times ISO 8601 UTC; null: none)."""

    release: str | None
    due: str | None
    late_steps: list[LateStepDoc]
    hard_close: str | None
    max_submissions: int | None
    cooldown_seconds: int | None
    max_grace_days: int | None


class GraceDays(Model):
    """The course's grace-day budget and what the student has spent."""

    budget: int
    spent: int
    left: int
    spent_here: int


class Standing(Model):
    """Where a student stands: may they upload now, at what credit, how many submissions are left."""

    policy: PolicyDoc
    extended: bool
    extension_reason: str
    can_upload: bool
    refusal: Literal["not_released", "closed", "limit_reached", "cooling_down"] | None
    message: str
    credit_now: float | None
    late_now: bool
    submissions_used: int
    submissions_left: int | None
    next_upload_at: str | None
    grace_days: GraceDays | None
    results_visible: bool
    counts: Literal["latest", "best"] = Field(description="Which of the student's graded submissions the "
                                              "gradebook counts: the latest or the best")


class PolicyOverride(BaseModel):
    """The offering's override of the manifest's policy: every field replaces the manifest's (blank or
    absent: the manifest's value). Naive dates are UTC."""

    model_config = ConfigDict(extra="forbid")

    release: str | None = None
    due: str | None = None
    # The lows are the service's: a penalty of 0, no late days or a limit of 0 submissions is said by leaving the
    # field out (the service's words say so to a form or the CLI; here pydantic's say the bound).
    late_penalty_per_day: float | None = Field(default=None, gt=0, le=MAXIMUM["late_penalty_per_day"],
                                               description="Percent of credit lost per late day; with late_days. "
                                               "Leave both out for no late window.")
    late_days: int | None = Field(default=None, ge=1, le=MAXIMUM["late_days"],
                                  description="How many days late work is taken, at a step per day.")
    late_steps: list[dict[str, Any]] | None = None
    hard_close: str | None = None
    max_submissions: int | None = Field(default=None, ge=1, le=MAXIMUM["max_submissions"],
                                        description="Uploads a student may make; leave it out for no limit.")
    cooldown_minutes: float | None = Field(default=None, ge=0, le=MAXIMUM["cooldown_minutes"])
    max_grace_days: int | None = Field(default=None, ge=0, le=MAXIMUM["max_grace_days"])


class ExtensionRequest(BaseModel):
    """Give one student a new due date, or a number of extra days after the offering's due date."""

    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=254)
    due: str | None = Field(default=None, max_length=64)
    days: float | None = Field(default=None, gt=0, le=MAXIMUM["days"])
    reason: str = Field(default="", max_length=500)


class ExtensionDoc(Model):
    """A student's own due date."""

    email: str
    due: str
    reason: str


class ExtensionList(Model):
    """The extensions of an assignment."""

    extensions: list[ExtensionDoc]


class PolicyInForce(Model):
    """The course policy of an assignment: in force, from the manifest, the override, and the extensions."""

    assignment: str
    policy: PolicyDoc
    manifest: dict[str, Any]
    override: dict[str, Any] | None
    grace_days: int
    extensions: list[ExtensionDoc]


class AssignmentList(Model):
    """Assignments of the caller's courses."""

    assignments: list[Assignment]


class Queued(Model):
    """An accepted upload, waiting for a worker."""

    id: int
    status: SubmissionStatus = Field(description=ACCEPTED_STATUS)
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
    score: float | None = Field(description="null for an after-due-date test before the due date")
    max_score: float | None = Field(description="null for an after-due-date test before the due date")
    visibility: Visibility
    output: str


class DeliverableResultDoc(Model):
    """A deliverable's score and the tests behind it."""

    id: str
    title: str
    score: float
    max_score: float
    tests: list[TestResultDoc]


class LateDoc(Model):
    """The lateness decided at upload time."""

    late: bool
    late_seconds: int
    grace_days_used: int
    credit: float = Field(description="Percent of the score that counts")


class Submission(Model):
    """A submission's status (queue position while queued) and, once graded, its result."""

    id: int
    url: str
    assignment: str
    status: SubmissionStatus
    submitted_at: str
    file: FileInfo
    user: SubmitterInfo
    queue_position: int | None = Field(default=None, description="While queued: 1 means next")
    grading: Grading | None = None
    score: float | None = None
    max_score: float | None = None
    message: str | None = Field(default=None, description=(
        "While queued, why it waits: the queue is down, grading is paused (no worker takes submissions now), or "
        "a retry; once finished, what the grading says"))
    execution_time: float | None = None
    deliverables: list[DeliverableResultDoc] | None = None
    import_failure: str | None = Field(default=None, description=(
        "Once graded, when the submission could not be imported (so no test ran): why, and what the import printed "
        "(each test repeats it; empty when it was imported)"))
    late: LateDoc
    counted_score: float | None = Field(default=None, description="score times late credit: what counts")
    withheld: bool | None = Field(default=None, description="More points are graded after the due date")
    full_max_score: float | None = None


class SubmissionList(Model):
    """A page of submissions, newest first."""

    submissions: list[Submission]
    next: str | None = Field(description="The next page's URL (the same filters and limit); null on the last page")


class StudentScores(Model):
    """One student's row of the gradebook."""

    email: str
    external_id: str | None
    name: str
    submissions: int
    submission_id: int | None
    submitted_at: str | None
    score: float | None = Field(description="The counted score: raw score times late credit")
    raw_score: float | None
    late_penalty: float | None
    credit: float | None
    late_seconds: int | None
    max_score: float
    deliverables: dict[str, float | None]


class Scores(Model):
    """The gradebook: per student, per deliverable scores."""

    assignment: str
    course: str
    version: int
    policy: Literal["latest", "best"]
    max_score: float
    late_work: bool
    deliverables: list[DeliverableInfo]
    students: list[StudentScores]


class SubmissionsQuery(BaseModel):
    """Filters of the submissions list."""

    model_config = ConfigDict(extra="allow")

    email: str | None = Field(default=None, max_length=254, description="Instructors: one student's submissions")
    limit: int = Field(default=PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE, description="Submissions per page")
    after: int | None = Field(default=None, ge=1, le=MAX_ID, description=(
        "The page after the submission with this id, as the `next` URL gives it (a submission of this list)"))


class StandingQuery(BaseModel):
    """Whose standing."""

    model_config = ConfigDict(extra="allow")

    email: str | None = Field(default=None, max_length=254, description=(
        "Instructors: a student of the course (a student may name only themselves)"))


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
    submitted_at: AwareDatetime | None = Field(
        default=None, description="When the student submitted, by the LMS's own record (RFC 3339 with an offset). "
        "Lateness is judged as of this time when it is before the message's arrival, by at most "
        "GRADER_LMS_BACKDATE_LIMIT (two days by default; an earlier one counts as that limit); absent or later: as "
        "of arrival")


class InboundQueued(Model):
    """The LMS's submission, queued."""

    id: int
    status: SubmissionStatus = Field(description=ACCEPTED_STATUS)
