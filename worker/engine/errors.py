"""Exceptions that separate the student's faults from ours."""


class InfrastructureError(RuntimeError):
    """Grading could not happen for a reason that is not the student's fault (retry later)."""


class AssignmentError(ValueError):
    """An assignment folder or manifest is invalid (an instructor's mistake, reported plainly)."""


class UsageError(ValueError):
    """A caller asked for something impossible: unknown assignment, wrong file name, bad option."""
