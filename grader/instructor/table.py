"""The students-by-deliverables table (sorted and filtered on the server, so it works without JavaScript) and
its CSV export, which an LMS imports: one row per student, a column per deliverable and the total."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from grader.templating import fmt

SORT_KEYS = ("student", "email", "submissions", "total", "submitted")
# Spreadsheets run a cell that starts with one of these as a formula: a name like "=HYPERLINK(...)" from an
# LMS roster must stay text when an instructor opens the export.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Sort:
    """The requested order: a column key (a fixed one or "d:<deliverable id>") and a direction."""

    key: str = "student"
    descending: bool = False

    @classmethod
    def parse(cls, key: str | None, direction: str | None, deliverable_ids: list[str]) -> Sort:
        """Read ?sort=&dir= (anything unknown falls back to the student name, ascending)."""
        allowed = set(SORT_KEYS) | {f"d:{d}" for d in deliverable_ids}
        chosen = key if key in allowed else "student"
        return cls(chosen, direction == "desc")

    def link(self, key: str) -> dict[str, str]:
        """Query arguments for a header link: clicking the current column flips its direction."""
        if key == self.key:
            descending = not self.descending
        else:
            # Numbers read best highest first; names alphabetically.
            descending = key not in ("student", "email")
        return {"sort": key, "dir": "desc" if descending else "asc"}

    def aria(self, key: str) -> str:
        """The aria-sort value of a column header."""
        if key != self.key:
            return "none"
        return "descending" if self.descending else "ascending"


def matches(row: dict[str, Any], query: str) -> bool:
    """Whether a gradebook row matches a search (name, email or external id, case-insensitive)."""
    query = query.strip().lower()
    if not query:
        return True
    haystack = " ".join(str(row.get(k) or "") for k in ("name", "email", "external_id")).lower()
    return all(word in haystack for word in query.split())


def sort_rows(rows: list[dict[str, Any]], sort: Sort) -> list[dict[str, Any]]:
    """Rows in the requested order; students without a score always go last, whatever the direction."""

    def value(row: dict[str, Any]) -> Any:
        """The row's value in the sorted column."""
        if sort.key == "student":
            return (row.get("name") or row["email"]).lower()
        if sort.key == "email":
            return row["email"].lower()
        if sort.key == "submissions":
            return row["submissions"]
        if sort.key == "total":
            return row["score"]
        if sort.key == "submitted":
            return row["submitted_at"]
        return row["deliverables"].get(sort.key[2:])

    present = [r for r in rows if value(r) is not None]
    missing = [r for r in rows if value(r) is None]
    # Ties keep the email order, so the table is stable between refreshes.
    present.sort(key=lambda r: r["email"].lower())
    present.sort(key=value, reverse=sort.descending)
    return present + sorted(missing, key=lambda r: r["email"].lower())


def safe_cell(text: str | None) -> str:
    """Text for a CSV cell that a spreadsheet will not run as a formula."""
    text = text or ""
    return "'" + text if text.startswith(_FORMULA_START) else text


def number_cell(value: float | None) -> str:
    """A score for the CSV: plain digits ("20", "12.5"), empty when there is no graded submission."""
    return "" if value is None else fmt(value)


def gradebook_csv(book: dict[str, Any]) -> str:
    """The gradebook as CSV text.

    Columns: name, email, external_id (the LMS's id for the student: LTI sub or SIS id), one column per
    deliverable named by its id (raw points), then total (the counted score). Where late work can be
    penalized, `raw_total` and `late_penalty` come before `total`, so the instructor sees both side by side
    and `total` stays the column an LMS imports. Empty cells mean "nothing graded yet", never zero.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    deliverable_ids = [d["id"] for d in book["deliverables"]]
    late = bool(book.get("late_work"))
    writer.writerow(["name", "email", "external_id", *deliverable_ids,
                     *(["raw_total", "late_penalty"] if late else []), "total"])
    for row in book["students"]:
        writer.writerow(
            [
                safe_cell(row.get("name")),
                safe_cell(row["email"]),
                safe_cell(row.get("external_id")),
                *[number_cell(row["deliverables"].get(d)) for d in deliverable_ids],
                *([number_cell(row.get("raw_score")), number_cell(row.get("late_penalty"))] if late else []),
                number_cell(row["score"]),
            ]
        )
    return out.getvalue()


def points_possible_row(book: dict[str, Any]) -> list[str]:
    """The maximum of each CSV column, for the note beside the download link."""
    columns = [f"{d['id']}: {fmt(d['max_score'])}" for d in book["deliverables"]]
    return [*columns, f"total: {fmt(book['max_score'])}"]
