"""The result document: one schema for the CLI, the database and the API, plus Gradescope/PrairieLearn views."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

TEST_STATUSES = ("passed", "failed", "error", "timeout", "memory", "crashed")
MAX_OUTPUT_CHARS = 4000


def cap_text(text: str, limit: int = MAX_OUTPUT_CHARS) -> str:
    """Cut `text` to `limit` characters, saying how much was dropped."""
    if len(text) <= limit:
        return text
    dropped = len(text) - limit
    return text[:limit] + f"\n… [{dropped} more characters not shown]"


@dataclass
class TestResult:
    """One reference test's verdict."""

    name: str
    status: str
    score: float
    max_score: float
    visibility: str = "visible"
    output: str = ""
    duration: float = 0.0


@dataclass
class DeliverableResult:
    """A deliverable's score and the tests behind it."""

    id: str
    title: str
    score: float
    max_score: float
    tests: list[TestResult] = field(default_factory=list)


@dataclass
class GradeResult:
    """What grading one submission produced."""

    assignment: str
    status: str  # "graded" | "error"
    score: float
    max_score: float
    message: str = ""
    execution_time: float = 0.0
    deliverables: list[DeliverableResult] = field(default_factory=list)
    runner: str = ""
    # Facts about the run (runner details, whether CUDA cases ran, sandboxes started), for the grading record.
    environment: dict[str, Any] = field(default_factory=dict)
    # Why the submission could not be imported, and what the import printed, when it could not: then no test ran.
    # Each test repeats it, so that each stands on its own where it is read alone; a page shows it once.
    import_failure: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON document, as printed by `grader grade` and stored by the service."""
        data = asdict(self)
        for deliverable in data["deliverables"]:
            for test in deliverable["tests"]:
                test.pop("duration", None)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GradeResult:
        """Rebuild a result from its JSON document."""
        deliverables = [
            DeliverableResult(
                id=d["id"],
                title=d["title"],
                score=float(d["score"]),
                max_score=float(d["max_score"]),
                tests=[TestResult(**t) for t in d.get("tests", [])],
            )
            for d in data.get("deliverables", [])
        ]
        return cls(
            assignment=data["assignment"],
            status=data["status"],
            score=float(data["score"]),
            max_score=float(data["max_score"]),
            message=data.get("message", ""),
            execution_time=float(data.get("execution_time", 0.0)),
            deliverables=deliverables,
            runner=data.get("runner", ""),
            environment=dict(data.get("environment", {})),
            import_failure=str(data.get("import_failure") or ""),
        )

    def scores_by_deliverable(self) -> dict[str, float]:
        """{deliverable id: score}."""
        return {d.id: d.score for d in self.deliverables}


def for_student(result: dict[str, Any], after_due: bool, withhold_points: bool = True) -> dict[str, Any]:
    """A copy of a result document reduced to what a student may see.

    A hidden test keeps its name and points but never its output. Before the due date an after-due-date
    test shows neither output nor points, and the totals leave it out: the deliverable and overall scores
    become "x of y visible points", `withheld` says more is graded after the due date, and the message
    (which quotes every deliverable's score) is replaced by one that names visible points only. Without a
    due date (`withhold_points` False) there is no "after" to wait for: such a test's detail stays hidden
    but its points count, as a hidden test's do.
    """
    visible = dict(result)
    visible["deliverables"] = []
    withheld_score = withheld_max = 0.0
    withheld = False
    for deliverable in result.get("deliverables", []):
        tests = []
        part_score = part_max = 0.0
        for test in deliverable.get("tests", []):
            if test["visibility"] == "visible" or (test["visibility"] == "after_due_date" and after_due):
                tests.append(test)
            elif test["visibility"] == "after_due_date" and withhold_points:
                withheld = True
                part_score += float(test.get("score") or 0.0)
                part_max += float(test.get("max_score") or 0.0)
                tests.append({**test, "output": "", "status": "hidden", "score": None, "max_score": None})
            else:
                tests.append({**test, "output": "", "status": "hidden"})
        withheld_score, withheld_max = withheld_score + part_score, withheld_max + part_max
        shown = {**deliverable, "tests": tests}
        if part_max:
            shown["score"] = round(float(deliverable["score"]) - part_score, 4)
            shown["max_score"] = round(float(deliverable["max_score"]) - part_max, 4)
        visible["deliverables"].append(shown)
    if withheld:
        visible["score"] = round(float(result.get("score") or 0.0) - withheld_score, 4)
        visible["max_score"] = round(float(result.get("max_score") or 0.0) - withheld_max, 4)
        visible["withheld"] = True
        visible["full_max_score"] = result.get("max_score")
        if result.get("status") == "graded" and not result.get("import_failure"):  # (why it failed is no score)
            visible["message"] = (f"{visible['score']:g} of {visible['max_score']:g} visible points; "
                                  "more is graded after the due date.")
    return visible
