"""The pytest plugin the judge runs reference tests with: fixtures, markers and per-test verdicts."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest

from worker.engine.errors import InfrastructureError
from worker.engine.judge.outcomes import SandboxLimit, StudentError, with_printed
from worker.engine.judge.proxy import StudentProxy
from worker.engine.judge.session import StudentSession
from worker.engine.manifest import VISIBILITIES, Manifest

MESSAGE_LIMIT = 3000
VISIBILITY_RANK = {"visible": 0, "after_due_date": 1, "hidden": 2}


@dataclass
class Verdict:
    """One test's outcome as the judge saw it."""

    nodeid: str
    name: str
    deliverable: str
    points: float
    visibility: str
    status: str  # passed | failed | error | timeout | memory | crashed | skipped
    output: str
    duration: float


class GradingPlugin:
    """Collects a verdict per test; provides the `student`, `devices` and `cuda` fixtures.

    What collection learns (the tests' order and isolation groups, configuration errors) outlives a job: a
    judge that collected once can `bind` the plugin to each job's student session in a fresh fork.
    """

    def __init__(self, assignment: Manifest, session: StudentSession | None = None, cuda: bool = False) -> None:
        self.assignment = assignment
        self.config_errors: list[str] = []
        self._rank: dict[str, int] = {}
        self._spare_after: set[str] = set()  # tests after which a later test needs a new process
        self._park_after: dict[str, str] = {}  # tests whose process may wait for a later test: its deliverable
        self._descriptions: dict[str, tuple[str, str, float, str] | ValueError] = {}
        self._session: StudentSession | None = None
        self.bind(session, cuda)

    @property
    def session(self) -> StudentSession:
        """The student session of the job being graded."""
        if self._session is None:
            raise InfrastructureError("the judge ran a test before it was bound to a submission")
        return self._session

    def bind(self, session: StudentSession | None, cuda: bool) -> None:
        """Grade the next run's tests against `session` (None: not yet known, the plugin only collects)."""
        self._session = session
        self.cuda_available = cuda
        self.verdicts: dict[str, Verdict] = {}
        self.infrastructure_error: str | None = None
        self._started: dict[str, float] = {}
        self._next_item: pytest.Item | None = None

    # -- configuration -------------------------------------------------------------------------------
    def pytest_configure(self, config: pytest.Config) -> None:
        config.addinivalue_line("markers", "deliverable(id): the deliverable a test scores points for")
        config.addinivalue_line("markers", "points(n): points a test is worth")
        config.addinivalue_line("markers", "visibility(v): visible | hidden | after_due_date")

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.config_errors.append(f"{report.nodeid}: {str(report.longrepr)[-1500:]}")

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            try:
                visibility = self._describe(item)[3]
            except ValueError as exc:
                self.config_errors.append(f"{item.nodeid}: {exc}")
                visibility = "visible"
            self._rank[item.nodeid] = VISIBILITY_RANK[visibility]
        # Visible tests first, then after_due_date, then hidden: code and data of a test the student may not see
        # yet never reach a process whose output the student sees now, since every test whose output the
        # student could see sooner has ended before it starts (`StudentSession.enter_group`).
        items.sort(key=lambda item: self._rank[item.nodeid])
        self._plan_processes(items)

    def _plan_processes(self, items: list[pytest.Item]) -> None:
        """Which tests leave their process waiting for a later test of their deliverable (the next one belongs to
        another), and after which ones a later test still needs a fresh process (the sandbox forks it ahead)."""
        last_of: dict[str, int] = {}  # each deliverable's latest test so far
        fresh_at = set()  # the tests that start a process of their own
        for index, item in enumerate(items):
            deliverable = self._deliverable(item)
            earlier = last_of.get(deliverable) if deliverable is not None else None
            # Its deliverable's process, ended by the test after `earlier`, waits for this test instead.
            resumes = (self.assignment.fresh_process == "deliverable" and earlier is not None
                       and not self._shares_process(items[earlier], items[earlier + 1]))
            if resumes:
                self._park_after[items[earlier].nodeid] = str(deliverable)
            elif index == 0 or not self._shares_process(items[index - 1], item):
                fresh_at.add(index)
            if deliverable is not None:
                last_of[deliverable] = index
        fresh_later = False  # a later test starts a process of its own
        for index in reversed(range(len(items))):
            if fresh_later:
                self._spare_after.add(items[index].nodeid)
            if index in fresh_at:
                fresh_later = True

    def _deliverable(self, item: pytest.Item) -> str | None:
        try:
            return self._describe(item)[1]
        except ValueError:
            return None

    # -- fixtures ------------------------------------------------------------------------------------
    @pytest.fixture(scope="session")
    def student(self) -> StudentProxy:
        """The submission, reached through the sandbox."""
        return StudentProxy(self.session)

    @pytest.fixture(scope="session")
    def devices(self) -> list[str]:
        """Devices the tests should try: cpu, plus cuda when the sandbox has a GPU."""
        return ["cpu", "cuda"] if self.cuda_available else ["cpu"]

    @pytest.fixture
    def cuda(self) -> str:
        """The CUDA device; the test is skipped where the sandbox has no GPU."""
        if not self.cuda_available:
            pytest.skip("no GPU on this worker")
        return "cuda"

    # -- running -------------------------------------------------------------------------------------
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if self.infrastructure_error:
            pytest.skip("grading stopped")
        self.session.enter_group(self._rank.get(item.nodeid, 0))
        self.session.start_test(spare=item.nodeid in self._spare_after, deliverable=self._deliverable(item),
                                last=self._next_item is None)
        self._started[item.nodeid] = time.monotonic()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        self._next_item = nextitem  # (returns None: pytest's own protocol runs the test)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
        outcome = yield
        report: pytest.TestReport = outcome.get_result()
        if report.when == "setup" and report.skipped:
            self._record(item, "skipped", _skip_reason(report))
        elif report.when == "call" or (report.when == "setup" and report.failed):
            status, message = self._classify(report, call)
            self._record(item, status, message)
            if report.when == "call":
                keep = self._shares_process(item, self._next_item)
                self.session.end_test(keep=keep, park=None if keep else self._park_after.get(item.nodeid))

    def _shares_process(self, item: pytest.Item, nextitem: pytest.Item | None) -> bool:
        """May `nextitem` run in `item`'s process (if that stays as it started)? Only within one deliverable and
        one isolation group, and where the assignment asks for a fresh process per deliverable."""
        if nextitem is None or self.assignment.fresh_process != "deliverable":
            return False
        if self._rank.get(item.nodeid) != self._rank.get(nextitem.nodeid):
            return False
        try:
            return self._describe(item)[1] == self._describe(nextitem)[1]
        except ValueError:
            return False

    def _classify(self, report: pytest.TestReport, call: pytest.CallInfo[Any]) -> tuple[str, str]:
        if report.passed:
            return "passed", ""
        if report.skipped:
            return "skipped", _skip_reason(report)
        exc = call.excinfo.value if call.excinfo else None
        if isinstance(exc, InfrastructureError):
            self.infrastructure_error = str(exc)
            return "error", "grading infrastructure failed; this test will be run again"
        if isinstance(exc, SandboxLimit):
            return exc.status, str(exc)
        if isinstance(exc, StudentError):
            return ("failed" if exc.kind in ("not_implemented", "missing") else "error"), str(exc)
        if isinstance(exc, AssertionError):
            return "failed", _assertion_text(exc)
        if isinstance(exc, pytest.fail.Exception):  # pytest.fail("...") in a test: an ordinary failure
            return "failed", str(exc.msg if hasattr(exc, "msg") else exc)
        name = type(exc).__name__ if exc else "Error"
        return "failed", f"the result could not be checked ({name}: {exc})"

    def _record(self, item: pytest.Item, status: str, message: str) -> None:
        try:
            name, deliverable, points, visibility = self._describe(item)
        except ValueError:
            return
        output = message[:MESSAGE_LIMIT]
        if status != "passed":
            output = with_printed(output, "".join(self.session.output), MESSAGE_LIMIT)
        self.verdicts[item.nodeid] = Verdict(
            nodeid=item.nodeid,
            name=name,
            deliverable=deliverable,
            points=points,
            visibility=visibility,
            status=status,
            output=output.strip(),
            duration=round(time.monotonic() - self._started.get(item.nodeid, time.monotonic()), 4),
        )

    def _describe(self, item: pytest.Item) -> tuple[str, str, float, str]:
        """(title, deliverable, points, visibility) of `item`, read from its markers once (ValueError when they
        are wrong): a collecting judge reads them at collection, and the judges it forks inherit them."""
        known = self._descriptions.get(item.nodeid)
        if known is None:
            try:
                known = self._descriptions[item.nodeid] = self._read_markers(item)
            except ValueError as exc:
                known = self._descriptions[item.nodeid] = exc
        if isinstance(known, ValueError):
            raise ValueError(str(known))
        return known

    def _read_markers(self, item: pytest.Item) -> tuple[str, str, float, str]:
        marker = item.get_closest_marker("deliverable")
        if marker is None or not marker.args:
            raise ValueError("test has no deliverable marker")
        deliverable = str(marker.args[0])
        if self.assignment.deliverable(deliverable) is None:
            raise ValueError(f"unknown deliverable {deliverable!r}")
        points_marker = item.get_closest_marker("points")
        points = float(points_marker.args[0]) if points_marker and points_marker.args else 1.0
        vis_marker = item.get_closest_marker("visibility")
        visibility = str(vis_marker.args[0]) if vis_marker and vis_marker.args else self.assignment.visibility
        if visibility not in VISIBILITIES:
            raise ValueError(f"unknown visibility {visibility!r}")
        doc = getattr(getattr(item, "function", None), "__doc__", None)
        title = doc.strip().splitlines()[0].strip() if doc and doc.strip() else item.name.split("[")[0]
        callspec = getattr(item, "callspec", None)
        if callspec is not None:
            title += f" [{callspec.id}]"
        return title, deliverable, points, visibility


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr or "")


def _assertion_text(exc: AssertionError) -> str:
    """The assertion's own message first; pytest's rewritten comparison after it, shortened."""
    text = str(exc).strip()
    if not text:
        return "assertion failed"
    first, _, rest = text.partition("\n")
    detail = "\n".join(line for line in rest.splitlines()[:6] if line.strip())
    return f"{first}\n{detail}".strip()
