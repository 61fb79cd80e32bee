"""Numbers instructors decide from: score summaries and histograms over the gradebook (the counts it shows come
from `services.queries`)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

from grader.instructor.charts import histogram, render_svg
from grader.models import Assignment
from grader.services.queries import status_counts
from grader.services.scores import gradebook


@dataclass
class Summary:
    """Score summary of one column (a deliverable or the total) over students with a counted score."""

    id: str
    title: str
    max_score: float
    scores: list[float] = field(default_factory=list)

    @property
    def mean(self) -> float | None:
        """Average score, or None when nobody is graded."""
        return statistics.fmean(self.scores) if self.scores else None

    @property
    def median(self) -> float | None:
        """Median score, or None when nobody is graded."""
        return statistics.median(self.scores) if self.scores else None

    @property
    def percent(self) -> float | None:
        """Mean as a percentage of the maximum (for a bar people read at a glance)."""
        if self.mean is None or not self.max_score:
            return None
        return 100.0 * self.mean / self.max_score

    def svg(self) -> Markup:
        """This column's histogram as inline SVG."""
        return render_svg(histogram(self.title, self.scores, self.max_score), f"hist-{self.id}")

    def bins(self) -> list[Any]:
        """The histogram's bins (for the table shown beside the chart)."""
        return list(histogram(self.title, self.scores, self.max_score).bins)


@dataclass
class AssignmentOverview:
    """Everything the assignment page shows, computed once per request."""

    assignment: Assignment
    book: dict[str, Any]
    counts: dict[str, int]
    total: Summary
    deliverables: list[Summary]

    @property
    def submissions(self) -> int:
        """All submissions, whatever their status."""
        return sum(self.counts.values())

    @property
    def students(self) -> int:
        """Students enrolled in the course."""
        return len(self.book["students"])

    @property
    def graded_students(self) -> int:
        """Students whose counted submission is graded."""
        return len(self.total.scores)


def overview(assignment: Assignment, policy: str | None = None) -> AssignmentOverview:
    """Compute the assignment page's numbers from the gradebook (the same numbers the CSV exports)."""
    book = gradebook(assignment, policy)
    total = Summary("total", "Total", float(book["max_score"]))
    columns = [Summary(d["id"], d["title"], float(d["max_score"])) for d in book["deliverables"]]
    for row in book["students"]:
        if row["score"] is None:
            continue
        total.scores.append(float(row["score"]))
        for column in columns:
            value = row["deliverables"].get(column.id)
            if value is not None:
                column.scores.append(float(value))
    return AssignmentOverview(
        assignment=assignment,
        book=book,
        counts=status_counts([assignment.id]),
        total=total,
        deliverables=columns,
    )
