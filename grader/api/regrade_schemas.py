"""The regrade operations' request and response models (`grader.api.regrades`), beside `grader.api.schemas`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from grader.api.schemas import Model
from grader.models.types import MAX_ID

RegradeState = Literal["open", "published", "discarded"]
REGRADE_PAGE_SIZE, MAX_REGRADE_PAGE_SIZE = 25, 100  # regrades per page of the list: by default, and at most
# Students per page of a regrade's preview: by default (a whole course of most sizes in one), and at most.
CHANGES_PAGE_SIZE, MAX_CHANGES_PAGE_SIZE = 200, 1000
EMAIL_LENGTH = 320  # the longest an address can be


class RegradeRequest(BaseModel):
    """What to grade again: one submission, or (none named) every finished submission of the assignment."""

    model_config = ConfigDict(extra="forbid")

    submission: int | None = Field(default=None, ge=1, le=MAX_ID, description=(
        "One finished submission of this assignment; omitted or null: every finished submission"))


class RegradesQuery(BaseModel):
    """A page of the assignment's regrades."""

    model_config = ConfigDict(extra="allow")

    limit: int = Field(default=REGRADE_PAGE_SIZE, ge=1, le=MAX_REGRADE_PAGE_SIZE, description="Regrades per page")
    after: int | None = Field(default=None, ge=1, le=MAX_ID, description=(
        "The page after the regrade with this id, as the `next` URL gives it"))


class RegradeQuery(BaseModel):
    """Which students of a regrade's preview to show, a page at a time, in order of email."""

    model_config = ConfigDict(extra="allow")

    changes: Literal["all", "changed"] = Field(default="all", description=(
        "Every student the regrade touches, or only those whose scores publishing would change (`changed`)"))
    limit: int = Field(default=CHANGES_PAGE_SIZE, ge=1, le=MAX_CHANGES_PAGE_SIZE, description="Students per page")
    after: str | None = Field(default=None, min_length=1, max_length=EMAIL_LENGTH, description=(
        "The page after the student with this email, as the `next` URL gives it"))


class RegradeProgress(Model):
    """How far the regrade's new runs have got."""

    queued: int
    running: int
    graded: int
    error: int
    total: int
    finished: int = Field(description="graded + error")
    done: bool = Field(description="Every new run has finished: the regrade can be published")


class DeliverableChange(Model):
    """One deliverable's score in what counts before and after."""

    title: str
    before: float | None
    after: float | None


class StudentChange(Model):
    """One student's counted score before the regrade and once it is published."""

    email: str
    external_id: str | None
    before: float | None = Field(description="The counted score now (null: nothing graded counts)")
    after: float | None = Field(description="The counted score once published")
    delta: float | None = Field(description="after - before, when both exist")
    changed: bool = Field(description="Whether publishing changes anything this student sees")
    pending: bool = Field(description="Some of their submissions are still being graded again")
    before_submission: int | None
    after_submission: int | None
    deliverables: list[DeliverableChange]


class ChangeSummary(Model):
    """How many students go up, down, change otherwise, wait, or stay the same."""

    students: int
    up: int
    down: int
    other: int
    pending: int
    unchanged: int


class RegradeInfo(Model):
    """A regrade as its list shows it."""

    id: int
    url: str = Field(description="Where the regrade's document (with its preview) is")
    assignment: str
    scope: Literal["assignment", "submission"]
    submission: int | None = Field(description="The one submission a regrade of one grades again")
    submissions: int = Field(description="How many submissions it grades again")
    state: RegradeState
    requested_by: str | None = Field(description="The instructor who started it (null: their account is gone)")
    created_at: str
    from_version: int | None = Field(description="The assignment's tests' version before")
    to_version: int | None = Field(description="The version the new runs use")
    decided_by: str | None = Field(description="Who published or discarded it (for one replaced: who started "
                                               "the regrade that replaced it)")
    decided_at: str | None
    replaced_by: int | None = Field(description="The newer regrade over the same submissions that discarded it")


class RegradeDoc(RegradeInfo):
    """A regrade, its progress and its preview: what publishing it would change, per student."""

    progress: RegradeProgress
    summary: ChangeSummary = Field(description="Every student the regrade touches, whichever page this is")
    changes: list[StudentChange] = Field(description="A page of the students, in order of email")
    next: str | None = Field(description="The next page of `changes` (the same filter and limit); null on the last")


class RegradeList(Model):
    """A page of an assignment's regrades, newest first."""

    regrades: list[RegradeInfo]
    next: str | None = Field(description="The next page's URL (the same limit); null on the last page")


class RegradePublished(Model):
    """What publishing did."""

    published: int = Field(description="Submissions whose new run now counts (those that ended in error keep "
                                       "their old score)")
    regrade: RegradeDoc
