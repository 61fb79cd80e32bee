"""Result documents for other graders' hosts (Gradescope, PrairieLearn), under the pages' visibility rule.

The rule is the one students see on our pages (`for_student`): a visible test shows everything; a hidden
test shows its name and points only; an after-due-date test is hidden until the due date has passed.

* Gradescope enforces visibility itself (each test's `visibility` field has our meaning, `after_due_date`
  included), so its document keeps the output for instructors and lets Gradescope withhold it from students.
  A hidden test is marked `hidden` there.
* PrairieLearn shows students everything in its results, so the withheld output never enters the document.

Pure functions of a GradeResult: the command line uses them without an app, database or broker.
"""

from __future__ import annotations

from typing import Any

from worker.engine.result import GradeResult, TestResult

# What Gradescope itself shows when an autograder run fails (no results.json): our infrastructure errors
# make the same failure, never a 0 that looks like the student's.
GRADESCOPE_FAILURE = (
    "The autograder failed to execute correctly. Please ensure that your submission is valid. "
    "Contact your course staff for help in debugging this issue."
)
HIDDEN_NOTE = "A hidden test: only its points are shown."
AFTER_DUE_NOTE = "Its result is shown after the due date."


def shown_to_students(test: TestResult, after_due: bool) -> bool:
    """Whether a student may see `test`'s status and output (the pages' rule)."""
    return test.visibility == "visible" or (test.visibility == "after_due_date" and after_due)


def to_gradescope(result: GradeResult) -> dict[str, Any]:
    """Gradescope's results.json; each test carries its visibility for Gradescope to enforce."""
    tests = []
    for deliverable in result.deliverables:
        for test in deliverable.tests:
            tests.append(
                {
                    "name": f"{deliverable.title}: {test.name}",
                    "score": test.score,
                    "max_score": test.max_score,
                    "status": "passed" if test.status == "passed" else "failed",
                    "output": test.output,
                    "visibility": test.visibility,
                    "tags": [deliverable.id],
                }
            )
    return {
        "score": result.score,
        "execution_time": round(result.execution_time, 3),
        "output": result.message,
        "visibility": "visible",
        # The judge's own output may quote any test, hidden ones included: never shown to students.
        "stdout_visibility": "hidden",
        "tests": tests,
    }


def to_prairielearn(result: GradeResult, after_due: bool = False) -> dict[str, Any]:
    """PrairieLearn's external grader results (score as a fraction), withheld tests reduced to name and points.

    PrairieLearn grades at submission time and has no per-test visibility, so after-due-date tests stay
    withheld unless `after_due` says the due date has passed.
    """
    tests = []
    for deliverable in result.deliverables:
        for test in deliverable.tests:
            if shown_to_students(test, after_due):
                message = output = test.output
            else:
                message, output = (AFTER_DUE_NOTE if test.visibility == "after_due_date" else HIDDEN_NOTE), ""
            tests.append(
                {
                    "name": f"{deliverable.title}: {test.name}",
                    "description": deliverable.id,
                    "points": test.score,
                    "max_points": test.max_score,
                    "message": message,
                    "output": output,
                }
            )
    fraction = result.score / result.max_score if result.max_score else 0.0
    return {
        "gradable": result.status == "graded",
        "score": round(fraction, 6),
        "message": result.message,
        "tests": tests,
    }
