"""The gradebook table's order and search, and the CSV an LMS imports."""

from __future__ import annotations

import csv
import io

from grader.instructor.table import Sort, gradebook_csv, matches, safe_cell, sort_rows

BOOK = {
    "max_score": 40.0,
    "deliverables": [{"id": "a", "title": "Part A", "max_score": 20.0},
                     {"id": "b", "title": "Part B", "max_score": 20.0}],
    "students": [
        {"name": "Zoe", "email": "zoe@x.edu", "external_id": "z-1", "submissions": 2, "score": 30.0,
         "submitted_at": "2026-01-02T00:00:00+00:00", "deliverables": {"a": 20.0, "b": 10.0}},
        {"name": "=cmd()", "email": "amy@x.edu", "external_id": None, "submissions": 0, "score": None,
         "submitted_at": None, "deliverables": {"a": None, "b": None}},
        {"name": "Bob", "email": "bob@x.edu", "external_id": "b-2", "submissions": 1, "score": 12.5,
         "submitted_at": "2026-01-01T00:00:00+00:00", "deliverables": {"a": 12.5, "b": 0.0}},
    ],
}


def test_csv_has_one_row_per_student_and_a_column_per_deliverable_and_total() -> None:
    """Does the CSV carry name, email, external id, each deliverable and the total, as an LMS expects?"""
    rows = list(csv.reader(io.StringIO(gradebook_csv(BOOK))))
    assert rows[0] == ["name", "email", "external_id", "a", "b", "total"]
    assert rows[1] == ["Zoe", "zoe@x.edu", "z-1", "20", "10", "30"]
    assert rows[3] == ["Bob", "bob@x.edu", "b-2", "12.5", "0", "12.5"]


def test_csv_leaves_ungraded_cells_empty_and_defuses_formulas() -> None:
    """Is "nothing graded" an empty cell (not 0), and is a name starting with "=" kept as text?"""
    rows = list(csv.reader(io.StringIO(gradebook_csv(BOOK))))
    assert rows[2] == ["'=cmd()", "amy@x.edu", "", "", "", ""]
    assert safe_cell("+1") == "'+1" and safe_cell("@x") == "'@x" and safe_cell("ok") == "ok"


def test_sorting_puts_students_without_scores_last_in_both_directions() -> None:
    """Does sorting by total put ungraded students at the end whether ascending or descending?"""
    students = BOOK["students"]
    down = sort_rows(students, Sort("total", True))
    up = sort_rows(students, Sort("total", False))
    assert [r["email"] for r in down] == ["zoe@x.edu", "bob@x.edu", "amy@x.edu"]
    assert [r["email"] for r in up] == ["bob@x.edu", "zoe@x.edu", "amy@x.edu"]
    by_part = sort_rows(students, Sort("d:b", False))
    assert [r["email"] for r in by_part] == ["bob@x.edu", "zoe@x.edu", "amy@x.edu"]


def test_unknown_sort_keys_fall_back_to_the_student_name() -> None:
    """Is a made-up ?sort= value ignored rather than an error?"""
    sort = Sort.parse("../../etc", "desc", ["a"])
    assert sort.key == "student" and sort.descending
    assert Sort.parse("d:a", None, ["a"]).key == "d:a"


def test_header_links_flip_the_current_column_and_start_numbers_high() -> None:
    """Does clicking the sorted column flip it, and does a new numeric column start with the highest first?"""
    sort = Sort("total", True)
    assert sort.link("total") == {"sort": "total", "dir": "asc"}
    assert sort.link("d:a") == {"sort": "d:a", "dir": "desc"}
    assert sort.link("student") == {"sort": "student", "dir": "asc"}
    assert sort.aria("total") == "descending" and sort.aria("student") == "none"


def test_search_matches_name_email_or_external_id_by_every_word() -> None:
    """Does a search find students by any of their identifiers, requiring every word typed?"""
    zoe = BOOK["students"][0]
    assert matches(zoe, "ZOE") and matches(zoe, "z-1") and matches(zoe, "zoe x.edu")
    assert not matches(zoe, "zoe bob")
    assert matches(zoe, "  ")
