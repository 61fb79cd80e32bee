"""Result documents for other graders' hosts (Gradescope, PrairieLearn), under the pages' visibility rule.

The rule is the one students see on our pages (`for_student`): a visible test shows everything; a hidden
test shows its name and points only; an after-due-date test is hidden until the due date has passed.

* Gradescope enforces visibility itself (each test's `visibility` field has our meaning, `after_due_date`
  included), so its document keeps the output for instructors and lets Gradescope withhold it from students.
  A hidden test is marked `hidden` there. The total keeps every point: Gradescope does not show students the
  autograder total while their result holds tests they may not see (otter-grader's issue #260 reports just
  that), and after-due-date tests count toward it once shown.
* PrairieLearn shows students everything in its results, so the withheld output never enters the document.

Pure functions of a GradeResult: the command line uses them without an app, database or broker.
"""

from __future__ import annotations

from typing import Any

from worker.engine.result import GradeResult, TestResult, for_student

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


def withheld(test: TestResult, after_due: bool) -> bool:
    """Whether `test`'s points are withheld from students (an after-due-date test before the due date)."""
    return test.visibility == "after_due_date" and not after_due


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


def to_prairielearn(result: GradeResult, after_due: bool = False, withhold_points: bool = False) -> dict[str, Any]:
    """PrairieLearn's external grader results (score as a fraction), withheld tests reduced to name and points.

    PrairieLearn grades at submission time and has no per-test visibility, so after-due-date tests stay
    withheld unless `after_due` says the due date has passed. With `withhold_points` (a due date is ahead)
    their points are left out of the tests and the score too, as on our pages; without it (no due date is
    known, as for `grader grade`) their points count, as an assignment without a due date shows them.
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
                    # An after-due-date test shows no points before the due date (the pages' rule).
                    "points": None if withhold_points and withheld(test, after_due) else test.score,
                    "max_points": None if withhold_points and withheld(test, after_due) else test.max_score,
                    "message": message,
                    "output": output,
                }
            )
    # Before the due date the score is "x of y visible points", as on our pages: the totals never reveal
    # the after-due-date tests, and the message says more is graded later.
    shown = for_student(result.to_dict(), after_due, withhold_points)
    fraction = shown["score"] / shown["max_score"] if shown["max_score"] else 0.0
    return {
        "gradable": result.status == "graded",
        "score": round(fraction, 6),
        "message": shown["message"],
        "tests": tests,
    }
