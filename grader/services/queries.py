"""Read-only lookups the pages and the API show (lists, histories, change stamps): views run no queries of their
own. The rules (what may be submitted, which run counts, regrades) live in the other services."""

from __future__ import annotations

from typing import Any, Generic, NamedTuple, TypeVar

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import selectinload

from grader.database import db
from grader.errors import NotFound, ServiceError
from grader.models import STATUSES, Assignment, Course, Enrollment, GradingRun, Submission, User
from grader.models.regrades import Regrade, RegradeItem
from grader.services.accounts import course_with_code

Row = TypeVar("Row")


# --- what a user sees ----------------------------------------------------------------------------------------
def visible_assignments(user: User) -> list[Assignment]:
    """Assignments of the courses `user` is enrolled in (every assignment for admins), by slug."""
    query = select(Assignment).order_by(Assignment.slug)
    if not user.is_admin:
        query = query.join(Enrollment, Enrollment.course_id == Assignment.course_id).where(
            Enrollment.user_id == user.id
        )
    return list(db.session.scalars(query))


def taught_courses(user: User) -> list[Course]:
    """Courses `user` teaches (every course for admins), by code."""
    query = select(Course).order_by(Course.code)
    if not user.is_admin:
        query = query.join(Enrollment, Enrollment.course_id == Course.id).where(
            Enrollment.user_id == user.id, Enrollment.role == "instructor"
        )
    return list(db.session.scalars(query))


def find_course(code: str) -> Course:
    """The course with this code, or NotFound (the pages' wording; the CLI's adds how to create one)."""
    course = course_with_code(code)
    if course is None:
        raise NotFound(f"no course {code!r}")
    return course


def course_members(course_id: int) -> dict[str, User]:
    """Everyone enrolled in the course, by email."""
    users = db.session.scalars(
        select(User).join(Enrollment, Enrollment.user_id == User.id).where(Enrollment.course_id == course_id)
    )
    return {u.email: u for u in users}


def get_user(user_id: int) -> User | None:
    """The user with this id, if any."""
    return db.session.get(User, user_id)


# --- submissions ---------------------------------------------------------------------------------------------
HISTORY_PAGE = 25  # a student's history, a page at a time (their own pages: home, upload, result)


def _newest_first(query: Select[tuple[Submission]], after: Submission | None, limit: int | None,
                  results: bool = False) -> list[Submission]:
    """`query`'s submissions newest first, those after `after` in that order (by position, not by offset: uploads
    meanwhile neither repeat nor skip a row), at most `limit`. What each row shows is loaded in one query for all
    the rows, not one per row (a history of 400 was 400 queries at each refresh of a waiting result page): runs,
    assignment, and with `results` the uploader and every run's test results and scores (the API's documents)."""
    runs = selectinload(Submission.runs)
    loads = [runs, selectinload(Submission.assignment)]
    if results:
        loads += [runs.selectinload(GradingRun.test_results), runs.selectinload(GradingRun.scores),
                  selectinload(Submission.user)]
    return list(db.session.scalars(newest_first(query, Submission, after).options(*loads).limit(limit)))


def newest_first(query: Select[Any], model: Any, after: Any | None) -> Select[Any]:
    """`query` ordered newest first (by `created_at`, ties by id), from the row after `after` when one is given:
    every list shown newest first a page at a time (by position, not by offset: rows added meanwhile neither
    repeat nor skip one)."""
    query = query.order_by(model.created_at.desc(), model.id.desc())
    return query if after is None else query.where(older_than(model, after))


def older_than(model: Any, row: Any) -> ColumnElement[bool]:
    """Rows of `model` after `row` in a newest-first list (by `created_at`, ties by id): a keyset page's start."""
    return or_(model.created_at < row.created_at, and_(model.created_at == row.created_at, model.id < row.id))


def newer_than(model: Any, row: Any) -> ColumnElement[bool]:
    """Rows of `model` before `row` in a newest-first list (by `created_at`, ties by id)."""
    return or_(model.created_at > row.created_at, and_(model.created_at == row.created_at, model.id > row.id))


def _of_list(found: Submission | None, assignment_id: int | None, user_id: int | None) -> bool:
    """Whether `found` is one of a list of submissions: the assignment's and the user's, where they are given."""
    return found is not None and assignment_id in (None, found.assignment_id) and user_id in (None, found.user_id)


class Page(NamedTuple, Generic[Row]):
    """A page of a list shown newest first: its rows; whether older ones follow the last; whether newer ones come
    before the first (the page's links: *Older*, *Newest*)."""

    rows: list[Row]
    older: bool
    newer: bool

    @classmethod
    def of(cls, found: list[Row], limit: int, start: object | None) -> Page[Row]:
        """The page of `found`, fetched as up to one row more than `limit` (that row says older ones follow),
        starting after `start` (None: the newest page)."""
        return cls(found[:limit], len(found) > limit, start is not None)


def history(user_id: int, assignment_id: int | None = None, after: int | None = None,
            limit: int = HISTORY_PAGE) -> Page[Submission]:
    """A page of a user's submissions (to one assignment, or to all), newest first. The page starts after
    submission `after` (`?after=ID` of a page's link) when that is one of this list's; any other is the first page
    (a page forgives a stale or edited link, and then offers no way back to a newest page it already is)."""
    start = db.session.get(Submission, after) if after is not None else None
    if not _of_list(start, assignment_id, user_id):
        start = None
    query = select(Submission).where(Submission.user_id == user_id)
    if assignment_id is not None:
        query = query.where(Submission.assignment_id == assignment_id)
    return Page.of(_newest_first(query, start, limit + 1), limit, start)


def place_of(found: Submission) -> int | None:
    """The `?after=` cursor whose page of its owner's history of that assignment starts with `found`: the id of
    the submission just newer than it (None for the newest, which the first page starts with)."""
    return db.session.scalar(
        select(Submission.id)
        .where(Submission.user_id == found.user_id, Submission.assignment_id == found.assignment_id,
               newer_than(Submission, found))
        .order_by(Submission.created_at, Submission.id).limit(1))


def latest_submissions(user_id: int) -> dict[int, Submission]:
    """A user's newest submission to each assignment, by assignment id (the home page's cards), in one query."""
    rank = func.row_number().over(partition_by=Submission.assignment_id,
                                  order_by=(Submission.created_at.desc(), Submission.id.desc()))
    ranked = select(Submission.id, rank.label("rank")).where(Submission.user_id == user_id).subquery()
    query = (select(Submission).join(ranked, ranked.c.id == Submission.id).where(ranked.c.rank == 1)
             .options(selectinload(Submission.runs)))
    return {submission.assignment_id: submission for submission in db.session.scalars(query)}


def assignment_submissions(assignment_id: int, *, user_id: int | None = None, email: str | None = None,
                           after: Submission | None = None, limit: int | None = None,
                           results: bool = False) -> list[Submission]:
    """An assignment's submissions, newest first; only one user's when `user_id` or `email` names them; only those
    that come after `after` in that order, and at most `limit` of them (a page of the list); with `results`, each
    with its test results loaded (the API's list)."""
    query = select(Submission).where(Submission.assignment_id == assignment_id)
    if user_id is not None:
        query = query.where(Submission.user_id == user_id)
    if email:
        query = query.join(User, User.id == Submission.user_id).where(User.email == email.lower())
    return _newest_first(query, after, limit, results)


def page_start(after: int | None, assignment_id: int, user_id: int | None) -> Submission | None:
    """The submission a page of `assignment_submissions` starts after (`?after=ID`): one of that list's (of the
    assignment, and the user's own where `user_id` says they see only theirs), else a 400 that says nothing of
    whose it is."""
    if after is None:
        return None
    found = db.session.get(Submission, after)
    if not _of_list(found, assignment_id, user_id):
        raise ServiceError(f"after={after} is not a submission of this list: start again without it",
                           code="bad_cursor")
    return found


# --- regrades ------------------------------------------------------------------------------------------------
def find_regrade(regrade_id: int) -> Regrade:
    """The regrade with this id, or NotFound; its items come with their submissions and new runs, in a query each
    for all of them (one per item before: a regrade of 60 students' submissions was 270 queries per preview, and
    137 at each poll of its progress)."""
    items = selectinload(Regrade.items)
    found = db.session.get(Regrade, regrade_id, options=[
        items.selectinload(RegradeItem.submission), items.selectinload(RegradeItem.after_run)])
    if found is None:
        raise NotFound(f"no regrade {regrade_id}")
    return found


class RegradeRow(NamedTuple):
    """A regrade as its lists show it, with how many submissions it grades again and, for a regrade of one
    submission, which (counted in the query: a regrade of a whole course's submissions loaded hundreds of items
    only to count them)."""

    regrade: Regrade
    size: int
    submission_id: int | None

    @property
    def id(self) -> int:
        """The regrade's id (a page's cursor)."""
        return self.regrade.id


def regrades_of(assignment_id: int, limit: int, after: int | None = None) -> Page[RegradeRow]:
    """A page of the assignment's regrades (at most `limit`), newest first, after regrade `after` when that is one
    of the assignment's (any other id starts at the newest, as the other lists forgive a stale or edited link)."""
    start = db.session.get(Regrade, after) if after is not None else None
    if start is not None and start.assignment_id != assignment_id:
        start = None
    # Per row of the page (by the items' regrade_id index), not grouped over every regrade's items.
    mine = RegradeItem.regrade_id == Regrade.id
    size = select(func.count()).where(mine).correlate(Regrade).scalar_subquery()
    first = select(func.min(RegradeItem.submission_id)).where(mine).correlate(Regrade).scalar_subquery()
    query = (newest_first(select(Regrade, size, first).where(Regrade.assignment_id == assignment_id), Regrade, start)
             .options(selectinload(Regrade.requested_by), selectinload(Regrade.decided_by)))
    found = [RegradeRow(regrade, int(size), first if regrade.scope == "submission" else None)
             for regrade, size, first in db.session.execute(query.limit(limit + 1))]
    return Page.of(found, limit, start)


def open_regrade_of(submission_id: int) -> Regrade | None:
    """The newest open regrade that includes this submission, if any."""
    return db.session.scalar(
        select(Regrade)
        .join(RegradeItem, RegradeItem.regrade_id == Regrade.id)
        .where(Regrade.state == "open", RegradeItem.submission_id == submission_id)
        .order_by(Regrade.id.desc())
        .limit(1)
    )


# --- what live pages fingerprint -----------------------------------------------------------------------------
def run_counts(assignment_id: int) -> list[tuple[Any, ...]]:
    """Per run status of the assignment: (status, count, newest run id, highest attempt), sorted."""
    rows = db.session.execute(
        select(GradingRun.status, func.count(), func.max(GradingRun.id), func.max(GradingRun.attempt))
        .join(Submission, Submission.id == GradingRun.submission_id)
        .where(Submission.assignment_id == assignment_id)
        .group_by(GradingRun.status)
    )
    return sorted(map(tuple, rows))


def open_regrade_ids(assignment_id: int) -> list[int]:
    """Ids of the assignment's open regrades."""
    return list(db.session.scalars(
        select(Regrade.id).where(Regrade.assignment_id == assignment_id, Regrade.state == "open")
    ))


def regrade_run_statuses(regrade_id: int) -> list[tuple[Any, ...]]:
    """(run id, status) of every new run of a regrade, sorted."""
    rows = db.session.execute(
        select(GradingRun.id, GradingRun.status)
        .join(RegradeItem, RegradeItem.after_run_id == GradingRun.id)
        .where(RegradeItem.regrade_id == regrade_id)
    )
    return sorted(map(tuple, rows))


# --- what the instructor's assignment page counts ------------------------------------------------------------
def status_counts(assignment_ids: list[int]) -> dict[str, int]:
    """{status: number of submissions} over the given assignments (every status present, zero or not)."""
    counts = dict.fromkeys(STATUSES, 0)
    if assignment_ids:
        rows = db.session.execute(
            select(Submission.status, func.count())
            .where(Submission.assignment_id.in_(assignment_ids))
            .group_by(Submission.status)
        ).all()
        counts.update({status: int(n) for status, n in rows})
    return counts


def in_progress_by_user(assignment: Assignment) -> dict[int, str]:
    """{user id: "queued" | "running"} for students with a submission still being graded."""
    rows = db.session.execute(
        select(Submission.user_id, Submission.status).where(
            Submission.assignment_id == assignment.id, Submission.status.in_(("queued", "running"))
        )
    ).all()
    found: dict[int, str] = {}
    for user_id, status in rows:
        # "running" wins over "queued": it is the more useful thing to show.
        if found.get(user_id) != "running":
            found[user_id] = status
    return found
