"""Course policy as pure rules: when a student may upload, with what late credit, and what score counts.

No database, no clock of its own: every function takes `now` and the student's history as arguments, so the
service, the command line and the tests all judge the same way. Every datetime is timezone-aware UTC.

A policy has two forms:

* the **spec**, a JSON-able dict stored on the assignment row (copied from the manifest's `[policy]` table)
  and in the course offering's override: `release`/`due` (ISO 8601), `late` (a list of
  `[seconds after the due date, credit %]` steps), `close_after` (seconds after the due date; absent: the
  end of the last late step, or never when there is none), `max_submissions`, `cooldown` (seconds) and
  `max_grace_days`. Late steps and the hard close are relative to the due date, so moving the due date (an
  override, an extension) moves the whole late window with it.
* the **Policy**, the parsed form the rules below work on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAY = 86400  # seconds; late days are 24-hour periods, whatever the local clocks do around a DST change
SPEC_KEYS = ("release", "due", "late", "close_after", "max_submissions", "cooldown", "max_grace_days")
# The manifest's `[policy]` keys (the people-friendly form that `spec_from_manifest` turns into a spec).
MANIFEST_KEYS = ("timezone", "release", "late_penalty_per_day", "late_days", "late_steps", "hard_close",
                 "max_submissions", "cooldown_minutes", "max_grace_days")


@dataclass(frozen=True)
class LateStep:
    """Work up to `until` seconds after the due date earns `credit` percent of its score."""

    until: int
    credit: float


@dataclass(frozen=True)
class Policy:
    """The rules of one assignment for one student (after the override and any extension)."""

    release: datetime | None = None
    due: datetime | None = None
    late: tuple[LateStep, ...] = ()
    close_after: int | None = None  # seconds after `due`; None: see `close`
    max_submissions: int | None = None
    cooldown: int | None = None  # seconds between two uploads
    max_grace_days: int | None = None  # None: as many as the course budget has left

    @property
    def close(self) -> datetime | None:
        """The hard close: after it every upload is refused (None: never)."""
        if self.due is None:
            return None
        if self.close_after is not None:
            return self.due + timedelta(seconds=self.close_after)
        if self.late:
            return self.due + timedelta(seconds=self.late[-1].until)
        return None

    def shifted(self, due: datetime) -> Policy:
        """The same policy with its due date (and so its late window and hard close) moved to `due`."""
        return replace(self, due=due)

    def results_visible(self, now: datetime) -> bool:
        """Whether after-due-date tests are shown: once this student's due date has passed (never, when there
        is no due date: such tests wait for one)."""
        return self.due is not None and now >= self.due

    def to_dict(self) -> dict[str, Any]:
        """The policy as the API shows it (absolute times, credits in percent)."""
        due = self.due
        return {
            "release": _iso(self.release),
            "due": _iso(due),
            "late_steps": [
                {"until": _iso(due + timedelta(seconds=s.until)) if due else None, "credit": s.credit}
                for s in self.late
            ],
            "hard_close": _iso(self.close),
            "max_submissions": self.max_submissions,
            "cooldown_seconds": self.cooldown,
            "max_grace_days": self.max_grace_days,
        }


@dataclass(frozen=True)
class History:
    """What the student did before this upload: uploads that count toward the limit, the last one's time,
    and how many course grace days are left to them (other assignments' spending already taken off)."""

    uploads: int = 0
    last_upload_at: datetime | None = None
    grace_days_left: int = 0


@dataclass(frozen=True)
class Decision:
    """Whether an upload is accepted now; when it is, the lateness stored with it."""

    allowed: bool
    reason: str = ""  # not_released | closed | limit_reached | cooling_down
    message: str = ""
    credit: float = 100.0
    late_seconds: int = 0
    grace_days_used: int = 0
    retry_at: datetime | None = None  # when an upload refused for now becomes possible
    remaining: int | None = field(default=None)  # uploads left after this one (None: no limit)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def named_zone(name: str | None) -> tzinfo:
    """The IANA timezone `name` (UTC when empty); ValueError when unknown."""
    if not name:
        return UTC
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {name!r}") from exc


def parse_time(value: Any, zone: tzinfo = UTC) -> datetime:
    """An aware UTC datetime from a TOML datetime or an ISO 8601 string; naive ones are in `zone`."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an ISO 8601 date and time") from exc
    if not isinstance(value, datetime):
        raise ValueError(f"{value!r} is not a date and time")
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # (year 1 or 9999, on the wrong side of UTC)
        raise ValueError(f"{value.isoformat()} is out of range") from None


EARLIEST, LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(3000, 1, 1, tzinfo=UTC)


def given_time(value: Any, zone: tzinfo = UTC) -> datetime:
    """`parse_time` for a date someone gives (a manifest, an override, an extension): from 1970 to 2999, so that
    what is added to it (late days, an extension, a cooldown) is still a date."""
    when = parse_time(value, zone)
    if not EARLIEST <= when < LATEST:
        raise ValueError(f"{when.isoformat()} is out of range: give a date from 1970 to 2999")
    return when


MAX_LATE_DAYS = 3650  # ten years of a late step per day
MAX_COOLDOWN_MINUTES = 525_600  # a year: a longer one would overflow a date at last
MAX_GRACE_DAYS, MAX_SUBMISSIONS = 3650, 1_000_000


def amount(name: str, value: Any, low: float, high: float, whole: bool = False) -> float:
    """A number someone gives (a manifest, an override, the CLI's text) from `low` to `high`, else a ValueError
    naming the field. TOML's and JSON's `true` is no number: float(True) is 1, a limit nobody set."""
    try:
        number = float("nan") if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not low <= number <= high or (whole and not number.is_integer()):  # (NaN fails the range)
        raise ValueError(f"{name} must be a {'whole ' if whole else ''}number from {low:,} to {high:,}, "
                         f"not {value!r}")
    return number


def given_steps(steps: Any, zone: tzinfo = UTC) -> list[tuple[datetime, float]]:
    """`late_steps` as someone gives them, a list of `{until = <date>, credit = <percent>}`: (date, credit)."""
    if not isinstance(steps, list) or not all(isinstance(step, dict) for step in steps):
        raise ValueError("late_steps is a list of {until = <date>, credit = <percent>}")
    dated = []
    for step in steps:
        try:
            until = given_time(step.get("until"), zone)
        except ValueError as exc:
            raise ValueError(f"a late step's until: {exc}") from None
        dated.append((until, amount("a late step's credit", step.get("credit"), 0, 100)))
    return dated


def spec_from_manifest(data: dict[str, Any], due: datetime | None) -> dict[str, Any]:
    """The spec of a manifest's `[policy]` table (its `due` is the manifest's top-level one); ValueError names
    the bad field.

    Late work is either `late_penalty_per_day` (percent) for `late_days` days, or `late_steps`, a list of
    `{until = <date>, credit = <percent>}` in order (PrairieLearn's access rules). Naive dates are in
    `timezone` (an IANA name, default UTC).
    """
    unknown = set(data) - set(MANIFEST_KEYS)
    if unknown:
        raise ValueError(f"unknown policy fields {sorted(unknown)}")
    zone = named_zone(data.get("timezone"))
    spec: dict[str, Any] = {"due": _iso(due)}
    if "release" in data:
        spec["release"] = _iso(given_time(data["release"], zone))
    late = steps_from_fields(
        due,
        data.get("late_penalty_per_day"),
        data.get("late_days"),
        given_steps(data.get("late_steps", []), zone),
    )
    if late:
        spec["late"] = late
    if "hard_close" in data:
        spec["close_after"] = close_after(due, given_time(data["hard_close"], zone))
    if "max_submissions" in data:
        spec["max_submissions"] = int(amount("max_submissions", data["max_submissions"], 1, MAX_SUBMISSIONS, True))
    if "max_grace_days" in data:
        spec["max_grace_days"] = int(amount("max_grace_days", data["max_grace_days"], 0, MAX_GRACE_DAYS, True))
    if "cooldown_minutes" in data:  # (a year at most: a longer one would overflow a date at last)
        spec["cooldown"] = round(amount("cooldown_minutes", data["cooldown_minutes"], 0, MAX_COOLDOWN_MINUTES) * 60)
    check_spec(spec)
    return spec


def steps_from_fields(due: datetime | None, per_day: Any, days: Any,
                      steps: list[tuple[datetime, float]]) -> list[list[float]]:
    """Late steps `[[seconds after due, credit], …]` from a per-day penalty or from dated steps."""
    if per_day is None and days is None and not steps:
        return []
    if due is None:
        raise ValueError("late work needs a due date")
    if steps and (per_day is not None or days is not None):
        raise ValueError("give late_steps or late_penalty_per_day with late_days, not both")
    if steps:
        out = []
        for until, credit in steps:
            offset = int((until - due).total_seconds())
            if offset <= 0 or (out and offset <= out[-1][0]):
                raise ValueError("late_steps must come after the due date, in order")
            out.append([offset, credit])
        return out
    if per_day is None or days is None:
        raise ValueError("late_penalty_per_day and late_days go together")
    penalty = amount("late_penalty_per_day", per_day, 0, 100)
    count = int(amount("late_days", days, 1, MAX_LATE_DAYS, True))  # (a late step per day)
    if penalty == 0:
        raise ValueError("late_penalty_per_day must be above 0 (leave the late fields out for no penalty)")
    return [[k * DAY, round(max(0.0, 100.0 - k * penalty), 4)] for k in range(1, count + 1)]


def close_after(due: datetime | None, close: datetime) -> int:
    """The hard close as seconds after the due date (it may not come before it)."""
    if due is None:
        raise ValueError("a hard close needs a due date")
    offset = int((close - due).total_seconds())
    if offset < 0:
        raise ValueError("the hard close must not be before the due date")
    return offset


def check_spec(spec: dict[str, Any]) -> None:
    """ValueError unless the spec's dates are in order (release ≤ due ≤ every late step ≤ hard close)."""
    policy = from_spec(spec)
    if policy.release and policy.due and policy.release > policy.due:
        raise ValueError("the release date must not be after the due date")
    if policy.late and policy.close_after is not None and policy.close_after < policy.late[-1].until:
        raise ValueError("the hard close must not be before the end of the last late step")


def from_spec(spec: dict[str, Any]) -> Policy:
    """The Policy of a (merged) spec."""
    unknown = set(spec) - set(SPEC_KEYS)
    if unknown:
        raise ValueError(f"unknown policy fields {sorted(unknown)}")
    return Policy(
        release=parse_time(spec["release"]) if spec.get("release") else None,
        due=parse_time(spec["due"]) if spec.get("due") else None,
        late=tuple(LateStep(int(until), float(credit)) for until, credit in spec.get("late") or []),
        close_after=None if spec.get("close_after") is None else int(spec["close_after"]),
        max_submissions=spec.get("max_submissions"),
        cooldown=spec.get("cooldown") or None,
        max_grace_days=spec.get("max_grace_days"),
    )


def merge(manifest: dict[str, Any] | None, override: dict[str, Any] | None) -> dict[str, Any]:
    """The manifest's spec with the course offering's override on top (a key set to None clears it)."""
    merged = {**(manifest or {}), **(override or {})}
    return {key: value for key, value in merged.items() if value is not None}


def credit_for(policy: Policy, late_seconds: int) -> float:
    """The percentage earned by work `late_seconds` after the due date (0 or less: on time, 100)."""
    if late_seconds <= 0:
        return 100.0
    if not policy.late:
        return 100.0  # no late rules: late work is accepted (until any hard close) without a penalty
    for step in policy.late:
        if late_seconds <= step.until:
            return step.credit
    return 0.0  # past the last step but before the hard close: accepted for feedback, no credit


def decide(policy: Policy, now: datetime, history: History | None = None) -> Decision:
    """May this student upload now, and if so with what lateness and credit?

    Checked in order: the release date, the hard close, the submission limit, the cooldown. Grace days are
    spent Autolab's way: each started late day uses one, up to the course budget left and the assignment's
    `max_grace_days`, and the penalty applies only to the lateness they do not cover.
    """
    history = history or History()
    if policy.release is not None and now < policy.release:
        return Decision(False, "not_released", f"uploads open on {_words(policy.release)}",
                        retry_at=policy.release)
    close = policy.close
    if close is not None and now > close:
        return Decision(False, "closed", f"this assignment closed on {_words(close)}; uploads are no longer "
                        "accepted")
    if policy.max_submissions is not None and history.uploads >= policy.max_submissions:
        return Decision(False, "limit_reached", f"you have used all {policy.max_submissions} submissions "
                        "of this assignment", remaining=0)
    if policy.cooldown and history.last_upload_at is not None:
        ready = history.last_upload_at + timedelta(seconds=policy.cooldown)
        if now < ready:
            wait = math.ceil((ready - now).total_seconds())
            return Decision(False, "cooling_down", f"wait {_duration(wait)} before your next upload "
                            f"(possible from {_words(ready)})", retry_at=ready)
    remaining = None if policy.max_submissions is None else policy.max_submissions - history.uploads - 1
    late = 0 if policy.due is None else math.ceil((now - policy.due).total_seconds())
    if late <= 0:
        return Decision(True, remaining=remaining)
    grace = min(math.ceil(late / DAY), max(history.grace_days_left, 0))
    if policy.max_grace_days is not None:
        grace = min(grace, policy.max_grace_days)
    credit = credit_for(policy, late - grace * DAY)
    return Decision(True, credit=credit, late_seconds=late, grace_days_used=grace, remaining=remaining)


def counted_score(raw: float | None, credit: float | None) -> float | None:
    """The score that counts: the raw score times the late credit (None stays None: nothing graded)."""
    if raw is None:
        return None
    return round(raw * (100.0 if credit is None else credit) / 100.0, 4)


def _words(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} seconds"
    minutes = math.ceil(seconds / 60)
    if minutes < 120:
        return f"{minutes} minutes"
    return f"{math.ceil(minutes / 60)} hours"
