"""The outer clock on a judge process: how long its launcher waits before it takes the judge for stuck.

A judge stops its run at the assignment's `run_timeout` by its own clocks, which do not count the time that is
ours: a sandbox's start, the submission imported again for a test that must run in place
(`worker/engine/judge/session.py`); nor, past the limit, the time a busy machine kept tasks waiting for a CPU
(`worker/engine/judge/runclock.py`). The launcher's backstop (`run_timeout` plus a slack) catches only a judge
that is itself stuck, so it must move on by the seconds the judge gave back: before, a submission whose tests
each needed a fresh container (a thread started at import, on the fresh-container path) outran the backstop on
a busy host, and its grading failed as infrastructure, every retry alike.

The judge reports the seconds it gave back in all to a small file beside its verdicts (`Report`); the launcher
reads it when its own deadline comes (`Backstop`). A judge that stops reporting is killed at the last deadline
it justified. The file is written only once a second more has been given back, so a forked sandbox's start of a
few milliseconds costs no write on the submission's path.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

FILE_NAME = "given_back"
REPORT_STEP = 1.0  # seconds given back since the last report before the next one is written


def report_path(verdicts_path: Path) -> Path:
    """Where the judge of the job whose verdicts go to `verdicts_path` reports the seconds it gave back."""
    return verdicts_path.with_name(FILE_NAME)


class Report:
    """In the judge: writes the seconds given back so far, once they have grown by `REPORT_STEP`."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.written = 0.0

    def __call__(self, given_back: float) -> None:
        if self.path is None or given_back - self.written < REPORT_STEP:
            return
        partial = f"{self.path}.partial"
        try:
            Path(partial).write_text(f"{given_back:.3f}", encoding="ascii")
            os.replace(partial, self.path)  # the launcher never reads half a number
        except OSError:
            return  # unwritten, the backstop stays where it was: the run goes on, the next report may land
        self.written = given_back


class Backstop:
    """In the launcher: the deadline of a judge started now, `timeout` plus whatever it has given back."""

    def __init__(self, job: dict[str, Any], timeout: float) -> None:
        self.path = job.get("given_back_path")
        self.timeout = timeout
        self.start = time.monotonic()

    def given_back(self) -> float:
        """The seconds the judge says it gave back (0 before its first report, or if the report is unreadable)."""
        if not self.path:
            return 0.0
        try:
            return max(0.0, float(Path(self.path).read_text(encoding="ascii")))
        except (OSError, ValueError):
            return 0.0

    def deadline(self) -> float:
        """When the judge must be done by (monotonic clock), as far as it has reported so far."""
        return self.start + self.timeout + self.given_back()

    def passed(self) -> bool:
        """Whether the deadline has come, reports included."""
        return time.monotonic() >= self.deadline()

    def describe(self) -> str:
        """The limit it ran under, for the error message."""
        extra = self.given_back()
        return f"{self.timeout:g} s" + (f" (and {extra:.0f} s of sandbox starts and imports)" if extra else "")
