"""The course policy's pure rules at every boundary: one second either side of the release, the due date,
each late step and the hard close; dates given with a non-UTC offset, in a named timezone, across a DST
change; grace days, limits, cooldowns; and the student's view of after-due-date tests."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from worker.engine.errors import AssignmentError
from worker.engine.manifest import load_assignment
from worker.engine.policy import DAY, History, counted_score, decide, from_spec, spec_from_manifest
from worker.engine.result import for_student

S = timedelta(seconds=1)
RELEASE = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
DUE = datetime(2025, 3, 7, 23, 59, tzinfo=UTC)


def policy(**fields: object) -> object:
    """A policy from manifest-style `[policy]` fields, due at DUE."""
    return from_spec(spec_from_manifest(dict(fields), DUE))


PER_DAY = dict(release=RELEASE, late_penalty_per_day=10, late_days=3)


def test_an_upload_one_second_before_the_release_is_refused_and_at_the_release_accepted() -> None:
    """Is the release date the first moment uploads are open?"""
    rules = policy(**PER_DAY)
    early = decide(rules, RELEASE - S)
    assert not early.allowed and early.reason == "not_released" and early.retry_at == RELEASE
    assert decide(rules, RELEASE).allowed


def test_an_upload_at_the_due_date_is_on_time_and_one_second_later_is_late() -> None:
    """Does the due date itself still count as on time, and the next second as a day late?"""
    rules = policy(**PER_DAY)
    on_time = decide(rules, DUE)
    assert on_time.allowed and on_time.credit == 100 and on_time.late_seconds == 0
    late = decide(rules, DUE + S)
    assert late.allowed and late.credit == 90 and late.late_seconds == 1


@pytest.mark.parametrize(("day", "credit_at_end", "credit_after"), [(1, 90, 80), (2, 80, 70)])
def test_each_late_day_ends_exactly_24_hours_after_the_last(day: int, credit_at_end: float,
                                                          credit_after: float) -> None:
    """Does each a 10 % step hold to its last second and give way to the next one a second later?"""
    rules = policy(**PER_DAY)
    end = DUE + timedelta(days=day)
    assert decide(rules, end).credit == credit_at_end
    assert decide(rules, end + S).credit == credit_after


def test_an_upload_one_second_after_the_hard_close_is_refused() -> None:
    """Is the end of the late window the hard close: its last second accepted, the next refused?"""
    rules = policy(**PER_DAY)
    close = DUE + timedelta(days=3)
    assert decide(rules, close).allowed and decide(rules, close).credit == 70
    refused = decide(rules, close + S)
    assert not refused.allowed and refused.reason == "closed" and "closed" in refused.message


def test_dated_late_steps_work_like_prairielearn_access_rules() -> None:
    """Do `late_steps` give each step's credit up to its own date, and close after the last?"""
    rules = policy(late_steps=[{"until": DUE + timedelta(hours=12), "credit": 75},
                               {"until": DUE + timedelta(days=2), "credit": 50}])
    assert decide(rules, DUE + timedelta(hours=12)).credit == 75
    assert decide(rules, DUE + timedelta(hours=12) + S).credit == 50
    assert decide(rules, DUE + timedelta(days=2)).credit == 50
    assert not decide(rules, DUE + timedelta(days=2) + S).allowed


def test_a_hard_close_later_than_the_steps_accepts_work_for_no_credit() -> None:
    """Between the last late step and a later hard close, is work accepted at 0 % credit?"""
    rules = policy(late_penalty_per_day=50, late_days=1, hard_close=DUE + timedelta(days=5))
    assert decide(rules, DUE + timedelta(days=2)).credit == 0
    assert not decide(rules, DUE + timedelta(days=5) + S).allowed


def test_a_hard_close_at_the_due_date_allows_no_late_work() -> None:
    """With the hard close at the due date, is the next second refused?"""
    rules = policy(hard_close=DUE)
    assert decide(rules, DUE).allowed and not decide(rules, DUE + S).allowed


def test_a_due_date_with_a_non_utc_offset_is_the_same_instant() -> None:
    """Is 18:59 at -05:00 judged as 23:59 UTC, one second either side?"""
    eastern = datetime.fromisoformat("2025-03-07T18:59:00-05:00")
    rules = from_spec(spec_from_manifest({"late_penalty_per_day": 10, "late_days": 1}, eastern))
    assert rules.due == DUE
    assert decide(rules, DUE).credit == 100 and decide(rules, DUE + S).credit == 90


def test_late_days_are_24_hours_across_a_daylight_saving_change(tmp_path: Path) -> None:
    """A due date in America/New_York just before the spring-forward night: is day one still 86400 s,
    so it ends at 23:59 local time on the next day's clock (one hour 'later' than the wall clock says)?"""
    pack = tmp_path / "dst"
    pack.mkdir()
    (pack / "assignment.toml").write_text(
        'id = "dst"\ndue = 2025-03-08T23:59:00\n'
        '[policy]\ntimezone = "America/New_York"\nlate_penalty_per_day = 10\nlate_days = 2\n'
        '[[deliverables]]\nid = "a"\npoints = 1\n')
    manifest = load_assignment(pack)
    rules = from_spec(manifest.policy)
    assert rules.due == datetime(2025, 3, 9, 4, 59, tzinfo=UTC)  # 23:59 EST is 04:59 UTC
    day_one_end = rules.due + timedelta(seconds=DAY)  # 2025-03-10 04:59 UTC = 00:59 EDT
    assert decide(rules, day_one_end).credit == 90 and decide(rules, day_one_end + S).credit == 80
    assert not decide(rules, rules.due + timedelta(days=2) + S).allowed


def test_an_extension_moves_the_late_window_and_the_hard_close_but_not_the_release() -> None:
    """After an extension of two days, is the student on time until the new due date and late after it?"""
    rules = policy(**PER_DAY).shifted(DUE + timedelta(days=2))
    assert decide(rules, DUE + timedelta(days=2)).credit == 100
    assert decide(rules, DUE + timedelta(days=2) + S).credit == 90
    assert decide(rules, DUE + timedelta(days=5)).allowed and not decide(rules, DUE + timedelta(days=5) + S).allowed
    assert rules.release == RELEASE and not decide(rules, RELEASE - S).allowed


def test_grace_days_cover_started_late_days_then_the_penalty_applies() -> None:
    """With one grace day left, is a day-one upload at full credit and a day-two upload a day late?"""
    rules = policy(**PER_DAY)
    one = decide(rules, DUE + S, History(grace_days_left=1))
    assert (one.credit, one.grace_days_used, one.late_seconds) == (100, 1, 1)
    two = decide(rules, DUE + timedelta(days=1) + S, History(grace_days_left=1))
    assert (two.credit, two.grace_days_used) == (90, 1)
    capped = decide(policy(**PER_DAY, max_grace_days=0), DUE + S, History(grace_days_left=3))
    assert (capped.credit, capped.grace_days_used) == (90, 0)


def test_the_last_allowed_submission_is_accepted_and_the_next_refused() -> None:
    """With max_submissions = 2, is the second accepted with none left and the third refused?"""
    rules = policy(max_submissions=2)
    second = decide(rules, DUE, History(uploads=1))
    assert second.allowed and second.remaining == 0
    third = decide(rules, DUE, History(uploads=2))
    assert not third.allowed and third.reason == "limit_reached"


def test_the_cooldown_refuses_one_second_early_and_accepts_on_time() -> None:
    """With a 30-minute cooldown, is an upload refused at 29:59 and accepted at 30:00?"""
    rules = policy(cooldown_minutes=30)
    last = DUE - timedelta(hours=2)
    early = decide(rules, last + timedelta(minutes=30) - S, History(uploads=1, last_upload_at=last))
    assert not early.allowed and early.reason == "cooling_down" and early.retry_at == last + timedelta(minutes=30)
    assert decide(rules, last + timedelta(minutes=30), History(uploads=1, last_upload_at=last)).allowed


def test_the_counted_score_is_the_raw_score_times_the_credit() -> None:
    """Is 80 points at 90 % credit 72, and nothing graded still nothing?"""
    assert counted_score(80.0, 90.0) == 72.0
    assert counted_score(None, 90.0) is None


@pytest.mark.parametrize("bad", [
    {"late_days": 3},
    {"late_penalty_per_day": 10, "late_days": 0},
    {"hard_close": DUE - S},
    {"release": DUE + S},
    {"max_submissions": 0},
    {"timezone": "Mars/Olympus"},
    {"late_stepz": []},
    {"late_penalty_per_day": 10, "late_days": 3651},  # a step per day: ten years at most
    {"cooldown_minutes": 525_601},  # a year at most (a longer one would overflow a date at last)
    {"cooldown_minutes": float("inf")},
    {"cooldown_minutes": float("nan")},
    {"max_grace_days": float("inf")},
    {"max_grace_days": 3651},
    {"max_submissions": 1_000_001},
    {"cooldown_minutes": True},  # TOML's true is no number (it was a cooldown of one minute)
    {"late_penalty_per_day": True, "late_days": 2},
    {"max_submissions": True},
    {"release": datetime(1969, 12, 31, tzinfo=UTC)},  # dates from 1970 to 2999 only
    {"hard_close": datetime(9999, 12, 31, tzinfo=UTC)},
])
def test_a_manifest_with_an_inconsistent_policy_is_refused_with_a_reason(tmp_path: Path, bad: dict) -> None:
    """Does a bad `[policy]` table make the manifest fail to load, naming the problem?"""
    with pytest.raises(ValueError):
        spec_from_manifest(bad, DUE)
    pack = tmp_path / "p"
    pack.mkdir()
    lines = [f"{key} = {value.isoformat()}" if isinstance(value, datetime) else
             f"{key} = {str(value).lower()}" if isinstance(value, bool) else f"{key} = {value!r}"
             for key, value in bad.items()]
    table = "\n".join(lines).replace("'", '"')
    (pack / "assignment.toml").write_text(
        f'id = "p"\ndue = {DUE.isoformat()}\n[policy]\n{table}\n[[deliverables]]\nid = "a"\npoints = 1\n')
    with pytest.raises(AssignmentError, match="policy"):
        load_assignment(pack)


@pytest.mark.parametrize(("steps", "words"), [
    ("2025-03-08: 50", "late_steps is a list of {until = <date>, credit = <percent>}"),
    ([1], "late_steps is a list of"),
    ([{"until": DUE + 2 * S}], "a late step's credit must be a number from 0 to 100, not None"),
    ([{"until": DUE + 2 * S, "credit": "half"}], "a late step's credit must be a number from 0 to 100, not 'half'"),
    ([{"until": DUE + 2 * S, "credit": True}], "a late step's credit must be a number"),
    ([{"until": DUE + 2 * S, "credit": 101}], "a late step's credit must be a number from 0 to 100, not 101"),
    ([{"credit": 50}], "a late step's until: None is not a date and time"),
])
def test_malformed_late_steps_are_refused_in_words_an_instructor_can_act_on(steps: object, words: str) -> None:
    """Does a late_steps that is not a list of {until, credit} say what it must be? (It was Python's own words:
    'credit', or 'int' object is not subscriptable; and credit = true was a credit of 1 %.)"""
    with pytest.raises(ValueError, match="^" + re.escape(words)):
        spec_from_manifest({"late_steps": steps}, DUE)


def result_with_after_due_test() -> dict:
    """A graded result: one deliverable with a visible 6-point test and an after-due-date 4-point one."""
    return {"assignment": "x", "status": "graded", "score": 10.0, "max_score": 10.0, "message": "Scored 10/10.",
            "deliverables": [{"id": "a", "title": "A", "score": 10.0, "max_score": 10.0, "tests": [
                {"name": "shown", "status": "passed", "score": 6.0, "max_score": 6.0, "visibility": "visible",
                 "output": "ok"},
                {"name": "later", "status": "passed", "score": 4.0, "max_score": 4.0,
                 "visibility": "after_due_date", "output": "secret"}]}]}


def test_before_the_due_date_after_due_tests_show_no_points_and_the_totals_leave_them_out() -> None:
    """Does the student see 6 of 6 visible points, no output or points of the later test, and a message
    saying more is graded after the due date?"""
    seen = for_student(result_with_after_due_test(), after_due=False)
    later = seen["deliverables"][0]["tests"][1]
    assert later["output"] == "" and later["score"] is None and later["max_score"] is None
    assert (seen["score"], seen["max_score"], seen["deliverables"][0]["score"]) == (6.0, 6.0, 6.0)
    assert seen["withheld"] is True and "after the due date" in seen["message"] and "10" not in seen["message"]


def test_before_the_due_date_a_failed_import_still_says_why() -> None:
    """When the submission could not be imported, does the student still read why (and what the import printed)
    before the due date, rather than "0 of 0 visible points"?"""
    failed = {**result_with_after_due_test(), "score": 0.0, "import_failure": "solution.py does not compile",
              "message": "Your submission could not be run, so no test passed.\nsolution.py does not compile"}
    seen = for_student(failed, after_due=False)
    assert seen["withheld"] is True and seen["message"] == failed["message"], seen
    assert seen["import_failure"] == "solution.py does not compile"


def test_after_the_due_date_the_full_result_appears() -> None:
    """After the due date, does the student see the whole result unchanged?"""
    full = result_with_after_due_test()
    assert for_student(full, after_due=True) == full


def test_the_readme_policy_example_loads(tmp_path: Path) -> None:
    """Does the README's example `assignment.toml` snippet load, with the late steps it describes?"""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Course policy", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "assignment.toml").write_text(f'id = "x"\n{block}\n[[deliverables]]\nid = "a"\npoints = 1\n')
    rules = from_spec(load_assignment(tmp_path).policy)
    assert [step.credit for step in rules.late] == [90, 80, 70] and rules.max_submissions == 10


def test_the_prairielearn_export_leaves_after_due_points_out_before_the_due_date() -> None:
    """Does PrairieLearn get 6 of 6 visible points (score 1.0) with no points for the later test before the
    due date, and the full 10 of 10 after it?"""
    from grader.exports import to_prairielearn
    from worker.engine.result import GradeResult

    result = GradeResult.from_dict(result_with_after_due_test())
    early = to_prairielearn(result, after_due=False, withhold_points=True)
    assert early["score"] == 1.0 and "after the due date" in early["message"]
    assert early["tests"][1]["points"] is None and early["tests"][1]["output"] == ""
    late = to_prairielearn(result, after_due=True, withhold_points=True)
    assert late["score"] == 1.0 and late["tests"][1]["points"] == 4.0
