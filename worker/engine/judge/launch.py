"""Cold or warm judge launchers: how `grade()` starts the judge process (a new Python each time, or a zygote fork).

The warm judge keeps one zygote process per worker process: torch and pytest are imported once, each submission
is judged in a fresh fork of it, and the zygote keeps the next sandbox started ahead of time. Every submission
still gets a new judge process and a sandbox that no other submission touched.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from worker.engine.errors import InfrastructureError

ZYGOTE_START_TIMEOUT = 120.0
REPO_ROOT = Path(__file__).resolve().parents[3]  # worker/engine/judge/launch.py -> the repository


def judge_env() -> dict[str, str]:
    """The environment judge processes run with: ours, plus the repository on the import path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    # torch.cuda.is_available() asks NVML instead of initialising CUDA: a zygote that asked (a test module may,
    # at import) can still fork judges that use CUDA.
    env.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    return env


class ColdJudge:
    """A new judge process per submission: slower, nothing shared between submissions but the disk."""

    last_stderr = ""

    def run(self, job: dict[str, Any], timeout: float) -> None:
        """Run one job to completion (the verdicts land in job['verdicts_path'])."""
        try:
            proc = subprocess.run([sys.executable, "-m", "worker.engine.judge"], input=json.dumps(job).encode(),
                                  capture_output=True, timeout=timeout, env=judge_env(), check=False)
        except subprocess.TimeoutExpired as exc:
            raise InfrastructureError(f"the judge did not finish within {timeout:g} s") from exc
        self.last_stderr = proc.stderr.decode("utf-8", "replace")[-2000:]

    def close(self) -> None:
        """Nothing to release."""


class WarmJudge:
    """A zygote that forks a judge per job; restarted when it dies. One job at a time per instance."""

    last_stderr = "(the zygote's stderr goes to the worker's log)"

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self._lock = threading.Lock()

    def _start(self) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self._buffer = b""
        self._proc = subprocess.Popen([sys.executable, "-m", "worker.engine.judge", "--zygote"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=judge_env())
        self._event(time.monotonic() + ZYGOTE_START_TIMEOUT, "ready")
        return self._proc

    def _event(self, deadline: float, key: str) -> dict[str, Any]:
        """The next control line carrying `key`, or InfrastructureError when the zygote dies or time is up."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while True:
            line, sep, rest = self._buffer.partition(b"\n")
            if sep:
                self._buffer = rest
                event = json.loads(line)
                if key in event:
                    return event
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(key)
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    self.close()
                    raise InfrastructureError("the judge zygote died")
                self._buffer += chunk

    def run(self, job: dict[str, Any], timeout: float) -> None:
        """Fork a judge for `job` and wait for it; a judge that overruns `timeout` is killed."""
        with self._lock:
            proc = self._start()
            assert proc.stdin is not None
            try:
                proc.stdin.write((json.dumps(job) + "\n").encode())
                proc.stdin.flush()
            except OSError as exc:
                self.close()
                raise InfrastructureError(f"the judge zygote is gone: {exc}") from exc
            deadline = time.monotonic() + timeout
            try:
                # Before it forks the job's judge, the zygote may start a sandbox zygote or collect the tests
                # (each with a limit of its own): a slow start on a busy host is not a dead zygote.
                started = self._event(deadline, "started")
            except TimeoutError as exc:
                self.close()
                raise InfrastructureError("the judge zygote did not fork a judge") from exc
            try:
                self._event(deadline, "done")
            except TimeoutError as exc:
                _kill(int(started["started"]))
                try:
                    self._event(time.monotonic() + 30, "done")
                except TimeoutError:
                    self.close()
                raise InfrastructureError(f"the judge did not finish within {timeout:g} s") from exc

    def close(self) -> None:
        """Stop the zygote (its warm sandbox goes with it)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=30)  # closing stdin lets it stop its warm sandbox and leave
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


_shared: WarmJudge | None = None


def shared_judge() -> WarmJudge | ColdJudge:
    """This process's warm judge (workers), unless GRADER_WARM_JUDGE=0 asks for cold ones."""
    global _shared
    if os.environ.get("GRADER_WARM_JUDGE", "1") == "0":
        return ColdJudge()
    if _shared is None:
        _shared = WarmJudge()
        atexit.register(_shared.close)
    return _shared
