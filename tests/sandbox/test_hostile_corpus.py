"""The hostile corpus: submissions that attack the grader, graded through the real engine on every path (the forked
sandbox on both runners, a fresh container per sandbox), each path a warm judge as a worker slot holds it, so
that every attack is followed by the next file on the same judge and sandbox zygote.

Every `tests/hostile/*.py` is an otherwise-correct autograd solution with one kind of attack in it. Its header
says what the engine must award, per deliverable:

    # expect: simple_gradients=20 multivariate_gradients=20 no_grad=20 zeroing_gradients=15 gradient_checking=20
    # expect-status: zeroing_gradients=timeout     (optional: every test of that deliverable that did not pass
                                                    ended with this status)
    # expect-message: timed out                    (optional: the result's message contains this text)
    # expect-next: reference=100                   (optional: the reference solution, graded right after on the
                                                    same runner, still gets 100)

Beyond the scores, every grading must leave the worker as it found it: status "graded", every output capped,
nothing of the reference solution, the tests' source or the worker's secrets in any output, no hidden test's
code in a visible test's output, no file dropped where the worker would read it, no more sandbox folders,
processes or containers than the warm path holds between submissions, and none once every judge is closed.
Sandbox folders are made under a private TMPDIR, so that what the judges of this module leave can be told apart
from anything else on the machine.
"""

from __future__ import annotations

import ast
import json
import re
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.corpus_paths import PATHS, GradingPath, GradingPaths, grading_paths
from tests.support.expectations import expected_scores
from tests.support.leftovers import processes_mentioning, sandbox_containers, sandbox_uid_processes, wait_until
from tests.support.sandbox_support import processes_named
from worker.engine.errors import UsageError
from worker.engine.grade import MAX_FILE_BYTES, check_files, grade
from worker.engine.manifest import get_assignment
from worker.engine.result import MAX_OUTPUT_CHARS, GradeResult
from worker.engine.runners import make_runner

REPO = Path(__file__).resolve().parents[2]
HOSTILE = sorted((REPO / "tests" / "hostile").glob("*.py"))  # the corpus: tests/hostile/, no test modules
ASSIGNMENT_DIR = REPO / "reference_tests" / "autograd"
REFERENCE = ASSIGNMENT_DIR / "reference" / "solution.py"
CANARY_DIR = Path("/tmp/grader-hostile-canary")  # noqa: S108  (symlinks_and_paths.py links to it from its work dir)
OUTPUT_CAP = MAX_OUTPUT_CHARS + 100  # cap_text's limit plus its "… [n more characters not shown]" note
# Where fake_results_files.py and daemon.py try to leave files the worker might read.
# The worker's real paths (no sandbox's): nothing may appear or change there.
HOST_TRAPS = [
    Path("/tmp/verdicts.json"),  # noqa: S108
    Path("/tmp/results.json"),  # noqa: S108
    Path("/tmp/grader-poison"),  # noqa: S108
    Path("/var/tmp/verdicts.json"),  # noqa: S108
    Path("/var/tmp/grader-poison"),  # noqa: S108
    Path("/verdicts.json"), Path("/autograder/results/results.json"), Path("/work/verdicts.json"),
]
HOST_TRAPS += [Path.home() / "verdicts.json", REPO / "verdicts.json", REPO / "results.json"]
TEST_SOURCE_MARKERS = ("pytestmark = pytest.mark.deliverable(", "@pytest.mark.points(", "def test_")
REQUIRED_ATTACKS = {
    "infinite_loop", "import_hang", "fork_bomb", "memory_bomb", "big_output", "network", "read_filesystem",
    "monkeypatch_comparisons", "always_equal", "exit_at_import_sys", "exit_at_import_os", "exits_in_functions",
    "fake_results_files", "protocol_forgery", "protocol_desync", "daemon", "symlinks_and_paths", "forged_kept",
}


@dataclass(frozen=True)
class Expectation:
    """What a hostile file's header promises."""

    scores: dict[str, float]
    statuses: dict[str, str]
    message: str | None
    next_reference: float | None


def expectation(path: Path) -> Expectation:
    """Parse the `# expect...` header lines of a hostile file."""
    head = path.read_text(encoding="utf-8")[:4000]

    def line(key: str) -> str | None:
        match = re.search(rf"^#\s*{key}:\s*(.+)$", head, re.MULTILINE)
        return match.group(1).strip() if match else None

    statuses = dict(pair.split("=", 1) for pair in (line("expect-status") or "").split())
    nxt = dict(pair.split("=", 1) for pair in (line("expect-next") or "").split())
    return Expectation(expected_scores(path), statuses, line("expect-message"),
                       float(nxt["reference"]) if "reference" in nxt else None)


# -- what must never show up ------------------------------------------------------------------------------------
def _test_functions(tree: ast.Module) -> Iterator[tuple[ast.FunctionDef, str]]:
    """(test function, its visibility) for every test function of a reference test module."""
    default = "visible"
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            visibility = default
            for decorator in node.decorator_list:
                if (isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute)
                        and decorator.func.attr == "visibility" and decorator.args
                        and isinstance(decorator.args[0], ast.Constant)):
                    visibility = str(decorator.args[0].value)
            yield node, visibility


def _code_sources(node: ast.AST) -> set[str]:
    """String literals passed to `student.code(...)` (and module constants they name) inside `node`."""
    found: set[str] = set()
    for call in ast.walk(node):
        if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "code"
                and call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str)):
            found.add(call.args[0].value.strip())
    return found


def hidden_code_sources() -> set[str]:
    """Code that hidden / after-due-date tests hand to the student, and no visible test does."""
    hidden: set[str] = set()
    visible: set[str] = set()
    for path in sorted(ASSIGNMENT_DIR.glob("test_*.py")):
        for node, visibility in _test_functions(ast.parse(path.read_text(encoding="utf-8"))):
            (visible if visibility == "visible" else hidden).update(_code_sources(node))
    return {src for src in hidden - visible if len(src) >= 12}


def secrets_for(submission: str, canary: str) -> list[str]:
    """Text that no output may contain: the reference solution's own lines, test-source markers, canaries."""
    lines = {line.strip() for line in REFERENCE.read_text(encoding="utf-8").splitlines()}
    own = submission
    reference_lines = sorted(line for line in lines if len(line) >= 30 and line not in own)
    secret_file = REPO / "instance" / "secret_key"
    extra = [secret_file.read_text().strip()] if secret_file.is_file() and secret_file.stat().st_size > 8 else []
    return [*reference_lines, *TEST_SOURCE_MARKERS, canary, *extra]


def _trap_state() -> dict[str, float | None]:
    return {str(p): (p.stat().st_mtime if p.exists() else None) for p in HOST_TRAPS}


@dataclass
class World:
    """Module-wide state: the private TMPDIR the judges use, canaries, and the machine before the corpus."""

    tmpdir: Path
    token: str
    canary: str
    sandbox_pids: set[int]
    containers: set[str]
    system_sbx_dirs: set[str]
    standing: dict[str, dict[str, int]] = field(default_factory=dict)  # what each warm path holds, by kind


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Canaries in place, judges on a private TMPDIR, listeners on 127.0.0.1:6379/5432 where those are free."""
    token = f"hostile-{uuid.uuid4().hex[:12]}"
    tmpdir = tmp_path_factory.mktemp(token)
    canary = f"grader-canary-{uuid.uuid4().hex}"
    CANARY_DIR.mkdir(exist_ok=True)
    (CANARY_DIR / "canary.txt").write_text(canary)
    listeners = []
    for port in (6379, 5432):  # Redis and PostgreSQL: if they are not running here, stand in for them
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen(16)
            sock.setblocking(False)
            listeners.append(sock)
        except OSError:
            sock.close()
    system_tmp = Path(tempfile.gettempdir())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TMPDIR", str(tmpdir))
        patch.setenv("SECRET_KEY", canary)
        patch.setenv("DATABASE_URL", f"postgresql://grader:{canary}@127.0.0.1:5432/grader")
        patch.setenv("GRADER_CANARY", canary)
        yield World(tmpdir=tmpdir, token=token, canary=canary, sandbox_pids=set(sandbox_uid_processes()),
                    containers=sandbox_containers(),
                    system_sbx_dirs={p.name for p in system_tmp.glob("grader-sbx-*")})
    for sock in listeners:
        try:
            conn, peer = sock.accept()
            conn.close()
            pytest.fail(f"a sandbox connected to the stand-in service on {sock.getsockname()} from {peer}")
        except BlockingIOError:
            pass
        finally:
            sock.close()
    for item in CANARY_DIR.iterdir():
        item.unlink()
    CANARY_DIR.rmdir()


@pytest.fixture(scope="module")
def paths(request: pytest.FixtureRequest, world: World) -> Iterator[GradingPaths]:
    """A runner and warm judge per path, started inside `world` (its TMPDIR and canaries)."""
    yield from grading_paths(request)


def holdings(world: World) -> dict[str, set[str]]:
    """What our sandboxes hold on this machine now: processes in their mounts or as a student uid (other than
    those there before the module), sandbox folders in our TMPDIR, sandbox containers (idem)."""
    return {
        "processes in a sandbox's mounts": set(processes_mentioning(world.token)),
        "processes of a sandbox uid": {f"{pid} {cmd}" for pid, cmd in sandbox_uid_processes().items()
                                       if pid not in world.sandbox_pids},
        "sandbox folders": {p.name for p in world.tmpdir.glob("grader-sbx-*")},
        "sandbox containers": sandbox_containers() - world.containers,
    }


def _settled(world: World) -> dict[str, int]:
    """Counts of `holdings` once three readings a second apart agree (zygotes fork and start ahead)."""
    readings: list[dict[str, int]] = []
    deadline = time.monotonic() + 60  # a fresh container started ahead takes seconds (more on a busy machine)
    while len(readings) < 3 or len({json.dumps(r, sort_keys=True) for r in readings[-3:]}) > 1:
        assert time.monotonic() < deadline, f"the warm paths never settled: {readings[-3:]}"
        readings.append({kind: len(items) for kind, items in holdings(world).items()})
        time.sleep(1)
    return readings[-1]


def standing(path: GradingPath, world: World) -> dict[str, int]:
    """How much every warm path made so far holds between submissions (zygotes and the children they forked
    ahead). A path's share is measured once, around its first two gradings of the reference."""
    shares = world.standing
    if path.name not in shares:
        before = _settled(world)
        for _ in range(2):
            assert path.grade({"solution.py": REFERENCE.read_bytes()}).score == 100
        after = _settled(world)
        shares[path.name] = {kind: after[kind] - before[kind] for kind in after}
    return {kind: sum(share[kind] for share in shares.values()) for kind in shares[path.name]}


def assert_as_found(world: World, path: GradingPath, context: str) -> None:
    """The machine holds no more than the warm paths hold between submissions: whatever the submission
    started (processes, folders, containers) is gone, and the canary is untouched."""
    expected = standing(path, world)

    def over() -> dict[str, list[str]]:
        now = holdings(world)
        return {kind: sorted(now[kind]) for kind in now if len(now[kind]) > expected[kind]}

    left = wait_until(over, 30)
    assert left == {}, f"{context}: more is left than the warm paths hold ({expected}): {left}"
    _assert_no_daemon_or_canary_change(world, context)


def assert_clean(world: World, context: str) -> None:
    """Nothing of our sandboxes is left at all (every judge closed): no process, folder or container."""
    left = wait_until(lambda: {kind: sorted(items) for kind, items in holdings(world).items() if items}, 30)
    assert left == {}, f"{context}: left behind: {left}"
    system_dirs = {p.name for p in Path(tempfile.gettempdir()).glob("grader-sbx-*")} - world.system_sbx_dirs
    assert system_dirs == set(), f"{context}: sandbox folders left in the system temp dir: {system_dirs}"
    _assert_no_daemon_or_canary_change(world, context)


def _assert_no_daemon_or_canary_change(world: World, context: str) -> None:
    assert processes_named("hostile-daemon") == [], f"{context}: the daemon outlived its sandbox"
    assert sorted(p.name for p in CANARY_DIR.iterdir()) == ["canary.txt"], f"{context}: the canary folder changed"
    assert (CANARY_DIR / "canary.txt").read_text() == world.canary


def assert_result_is_safe(result: GradeResult, submission: str, world: World) -> None:
    """Outputs are capped and carry no secret; visible tests show nothing of the hidden tests' code."""
    secrets = secrets_for(submission, world.canary)
    hidden = hidden_code_sources()
    texts = [("message", result.message)] + [
        (f"{d.id}/{t.name}", t.output) for d in result.deliverables for t in d.tests]
    assert len(result.message) <= OUTPUT_CAP
    for where, text in texts:
        assert len(text) <= OUTPUT_CAP, f"{where}: output of {len(text)} characters is not capped"
        leaked = [s for s in secrets if s in text]
        assert leaked == [], f"{where} contains what the sandbox must not see: {leaked[:3]}"
    for d in result.deliverables:
        for t in d.tests:
            if t.visibility == "visible":
                shown = [src for src in hidden if src in t.output]
                assert shown == [], f"{d.id}/{t.name} (visible) shows hidden tests' code: {shown}"
    assert len(json.dumps(result.to_dict())) < 512 * 1024


def assert_scores(result: GradeResult, expect: Expectation, label: str, deliverables: set[str]) -> None:
    assert result.status == "graded", result.message
    assert set(expect.scores) == deliverables, f"{label}: the header must name every deliverable"
    got = result.scores_by_deliverable()
    failing = {d.id: [f"{t.name}: {t.status}: {t.output[:300]}" for t in d.tests if t.status != "passed"]
               for d in result.deliverables if got[d.id] != pytest.approx(expect.scores[d.id])}
    assert got == pytest.approx(expect.scores), f"{label}: expected {expect.scores}, got {got}; {failing}"
    assert result.score == pytest.approx(sum(expect.scores.values()))
    for deliverable, status in expect.statuses.items():
        lost = [t.status for d in result.deliverables if d.id == deliverable for t in d.tests
                if t.status != "passed"]
        assert lost and set(lost) == {status}, f"{label}: {deliverable} tests ended {lost}, expected {status}"
    if expect.message is not None:
        assert expect.message in result.message, result.message


# -- the corpus --------------------------------------------------------------------------------------------------
def test_corpus_covers_every_attack() -> None:
    """Does the corpus hold at least 16 attacks, including every kind the engine issue lists?"""
    names = {p.stem for p in HOSTILE}
    assert len(HOSTILE) >= 16
    assert REQUIRED_ATTACKS <= names, REQUIRED_ATTACKS - names
    assignment = get_assignment("autograd")
    points = {d.id: d.points for d in assignment.deliverables}
    for path in HOSTILE:
        expect = expectation(path)
        assert set(expect.scores) == set(points), path.name
        assert all(0 <= expect.scores[k] <= points[k] for k in points), path.name
        assert path.read_text(encoding="utf-8").splitlines()[0].startswith("# expect: "), path.name


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("hostile", HOSTILE, ids=[p.stem for p in HOSTILE])
def test_hostile_submission(hostile: Path, path: str, paths: GradingPaths, world: World) -> None:
    """Does the attack get exactly its declared score on every path, and leave the worker as it found it?"""
    slot = paths[path]
    standing(slot, world)
    deliverables = {d.id for d in get_assignment("autograd").deliverables}
    expect = expectation(hostile)
    source = hostile.read_text(encoding="utf-8")
    traps = _trap_state()

    result = slot.grade({"solution.py": source.encode()})

    assert_scores(result, expect, hostile.name, deliverables)
    assert_result_is_safe(result, source, world)
    assert _trap_state() == traps, "a file appeared (or changed) where the worker could read it"
    assert_as_found(world, slot, hostile.name)
    if expect.next_reference is not None:
        after = slot.grade({"solution.py": REFERENCE.read_bytes()})
        assert after.score == expect.next_reference, (
            f"the reference scored {after.score} right after {hostile.name}: {after.message}")
        assert_as_found(world, slot, f"the reference after {hostile.name}")


def test_worker_is_healthy_after_the_corpus(paths: GradingPaths, world: World) -> None:
    """After every attack, does the reference still get 100 on each path's warm judge, and once those are closed,
    on a cold judge, with no sandbox process, folder or container left of any of it?"""
    for name in list(paths) or ["local"]:
        result = paths[name].grade({"solution.py": REFERENCE.read_bytes()})
        assert result.score == 100, f"{name}: {result.message}"
    paths.close()
    assert_clean(world, "after the corpus, every judge closed")
    result = grade(get_assignment("autograd"), {"solution.py": REFERENCE.read_bytes()}, make_runner("local"))
    assert result.score == 100, result.message
    assert_clean(world, "after a cold judge's grading")


# -- upload-level names and contents ------------------------------------------------------------------------------
BAD_NAMES = [
    "../solution.py", "solution.py/..", "/etc/passwd", "solution.py\x00.txt", "./solution.py", "solution.py/",
    "/solution.py", "sub/solution.py", "..\\solution.py", "solution.py\n", " solution.py", "SOLUTION.PY",
    "solution.pyc", "solution.py.txt", "..", ".", "", "solut\u0456on.py",  # a Cyrillic look-alike of i
    "solution.py::$DATA", "~/solution.py", "%2e%2e/solution.py",
]


@pytest.mark.parametrize("name", BAD_NAMES, ids=[repr(n) for n in BAD_NAMES])
def test_upload_names_are_rejected(name: str) -> None:
    """Is a file name that is not exactly an accepted name (path tricks, NUL, look-alikes) refused?"""
    assignment = get_assignment("autograd")
    with pytest.raises(UsageError):
        check_files(assignment, {name: b"print('hi')\n"})
    with pytest.raises(UsageError):  # also beside a valid file
        check_files(assignment, {"solution.py": b"x = 1\n", name: b"print('hi')\n"})


@pytest.mark.parametrize(("files", "reason"), [
    ({}, "nothing"),
    ({"solution.py": b"x = '\x00'\n"}, "NUL byte"),
    ({"solution.py": b"x = '\xff\xfe'\n"}, "not UTF-8"),
    ({"solution.py": b"#" * (MAX_FILE_BYTES + 1)}, "over the size limit"),
], ids=["empty", "nul", "latin1", "too-big"])
def test_upload_contents_are_rejected(files: dict[str, bytes], reason: str) -> None:
    """Is an upload that is empty, binary, not UTF-8 or too large refused before anything runs?"""
    with pytest.raises(UsageError):
        check_files(get_assignment("autograd"), files)
