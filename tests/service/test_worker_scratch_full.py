"""A worker host whose disk fills up: a real `grader worker` (docker runner) whose scratch folder (its TMPDIR) is a
tmpfs of the test's own, filled for real while the worker runs, beside the test's Redis, beat and PostgreSQL.

Every grading writes its verdicts and the submission's files to the scratch folder. On a full disk each one
failed as ours, and a worker that kept taking gradings spent every run's retries and ended it in error.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from grader.services.submissions import GRADING_PAUSED_MESSAGE
from tests.conftest import REPO, fresh_postgres_database, require_service
from tests.support.recovery_support import Watcher, assert_graded_exactly_once
from tests.support.service_stack import logs, running_stack

BOUND = 150  # seconds for the batch to be graded once the space is back (a busy 2-core CI host)


@contextmanager
def small_disk(path: Path, megabytes: int) -> Iterator[Path]:
    """A tmpfs of `megabytes` mounted at `path` (unmounted afterwards)."""
    if os.geteuid() != 0:
        require_service("a tmpfs of the test's own", "mounting one needs root")
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=1777", "grader-test-disk", str(path)],
                   check=True, timeout=20)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, timeout=20)


def fill(folder: Path, settle: float = 1.0) -> Path:
    """Write a file into `folder` until its file system refuses more, and write on whenever space comes free again
    (the last grading's own files, removed just after its score was stored), until it has stayed full for `settle`
    seconds; the file."""
    filler = folder / "filler"
    chunk = b"\0" * (1024 * 1024)
    with filler.open("wb", buffering=0) as out:
        full_since, give_up = None, time.monotonic() + 30
        while (full_since is None or time.monotonic() - full_since < settle) and time.monotonic() < give_up:
            try:
                while True:
                    out.write(chunk)
            except OSError:
                pass
            stats = os.statvfs(folder)
            if stats.f_bavail * stats.f_frsize >= len(chunk):
                full_since = None  # (a partial chunk's room is no room: the next write fails at once)
            elif full_since is None:
                full_since = time.monotonic()
            time.sleep(0.1)
    return filler


def test_with_the_only_worker_s_scratch_disk_full_uploads_wait_and_are_graded_once_space_is_freed(
        tmp_path: Path, docker_ready: bool) -> None:
    """When the disk under the only worker's scratch folder fills up, do uploads wait, shown as queued, with the
    instructor's queue panel saying why and the students' pages that grading is paused, and is every one graded in
    full once space is freed, none ending in error?"""
    assert docker_ready
    with small_disk(tmp_path / "scratch", 96) as scratch, fresh_postgres_database() as database, \
            running_stack(tmp_path, database, GRADER_RUNNER="docker") as stack:
        watcher = Watcher(stack.app, stack.world.student.headers)
        worker = stack.worker("worker", TMPDIR=str(scratch), GRADER_RUNNER_CHECK_INTERVAL="1")
        stack.beat()
        ids = stack.upload(1, watcher)
        watcher.wait_all_graded(BOUND)  # warm: its judge master and sandbox zygote run, their files in scratch
        filler = fill(scratch)
        filled = time.monotonic()
        ids += stack.upload(3, watcher)
        during = stack.panel_once_paused(worker)
        told = subprocess.run([sys.executable, "-m", "grader", "queue"], cwd=REPO, env=stack.env, capture_output=True,
                              text=True, timeout=60, check=False)
        # longer than a grading's retries last here (backoff 1 s doubling, 5 retries: ~31 s)
        time.sleep(max(0.0, 40 - (time.monotonic() - filled)))
        waiting = stack.statuses(ids[1:])
        watcher.poll()  # as the students' pages see their waiting submissions now
        filler.unlink()
        assert set(waiting) <= {"queued", "running"}, (waiting, logs(stack))
        watcher.wait_all_graded(BOUND)
        watcher.assert_truthful()
        assert_graded_exactly_once(stack.app, ids)
        assert "takes gradings again" in worker.output(), logs(stack)
        assert "Workers online</dt><dd>1 (0 taking gradings)" in during, during
        assert f"its scratch folder {scratch} cannot be written (No space left on device)" in during, during
        # ... and the students, without the why: grading is paused and their submissions keep their places.
        assert any(GRADING_PAUSED_MESSAGE in watcher.messages[i] for i in ids[1:]), watcher.messages
        # `grader queue`, as a monitoring check runs it: exit 1, the paused worker and the stranded queue named.
        assert told.returncode == 1, (told.stdout, told.stderr)
        assert "workers\t1 online, 0 taking gradings\n" in told.stdout, told.stdout
        assert "cannot be written (No space left on device)" in told.stdout, told.stdout
        assert re.search(r"stranded\t[1-3] waiting in the cpu queue, which no online worker takes now", told.stdout)


def test_a_scratch_folder_short_of_space_or_read_only_is_reported_with_the_reason(tmp_path: Path) -> None:
    """Does the readiness check name a scratch folder with less free space than a grading may need, and one whose
    file system refuses writes (as a disk with errors is remounted read-only), and pass one with room?"""
    from worker.engine.grade import MIN_SCRATCH_FREE_MB, scratch_problem

    with small_disk(tmp_path / "small", MIN_SCRATCH_FREE_MB // 2) as small:
        assert scratch_problem(str(small)) == (f"its scratch folder {small} has {MIN_SCRATCH_FREE_MB // 2} MB free, "
                                               f"under the {MIN_SCRATCH_FREE_MB} MB its gradings may need")
        subprocess.run(["mount", "-o", "remount,ro", str(small)], check=True, timeout=20)
        assert scratch_problem(str(small)) == f"its scratch folder {small} cannot be written (Read-only file system)"
    with small_disk(tmp_path / "roomy", MIN_SCRATCH_FREE_MB * 2) as roomy:
        assert scratch_problem(str(roomy)) is None
        assert list(roomy.iterdir()) == []  # the probe leaves nothing behind
