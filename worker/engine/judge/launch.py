"""Cold or warm judge launchers: how `grade()` starts the judge process (a new Python each time, or a zygote fork).

The warm judge keeps one zygote process per worker process: torch and pytest are imported once, each submission
is judged in a fresh fork of it, and the zygote keeps the next sandbox started ahead of time. Every submission
still gets a new judge process and a sandbox that no other submission touched.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from worker.engine.errors import InfrastructureError
from worker.engine.judge.backstop import Backstop

log = logging.getLogger(__name__)
ZYGOTE_START_TIMEOUT = 120.0
MASTER_START_TIMEOUT = 60.0
MASTER_ENV = "GRADER_JUDGE_MASTER"  # the judge master's socket, for the worker's pool processes
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
        """Run one job to completion (the verdicts land in job['verdicts_path']); a judge that overruns `timeout`
        (plus the time it gave back: `backstop.py`) is killed."""
        backstop = Backstop(job, timeout)
        with subprocess.Popen([sys.executable, "-m", "worker.engine.judge"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=judge_env()) as proc:
            data: bytes | None = json.dumps(job).encode()
            while True:
                try:
                    _, stderr = proc.communicate(data, timeout=max(0.0, backstop.deadline() - time.monotonic()))
                    break
                except subprocess.TimeoutExpired as exc:
                    data = None  # sent already; communicate() goes on where it stopped, output included
                    if backstop.passed():
                        proc.kill()
                        proc.communicate()
                        raise InfrastructureError(f"the judge did not finish within {backstop.describe()}") from exc
        self.last_stderr = stderr.decode("utf-8", "replace")[-2000:]

    def close(self) -> None:
        """Nothing to release."""


class _OwnZygote:
    """A judge zygote this process started (no judge master): a child process, its pipes the control line."""

    def __init__(self) -> None:
        self.pid = 0
        self.proc = subprocess.Popen([sys.executable, "-m", "worker.engine.judge", "--zygote"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=judge_env())

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def fileno(self) -> int:
        assert self.proc.stdout is not None
        return self.proc.stdout.fileno()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=30)  # closing stdin lets it stop its sandboxes and leave
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


class _ForkedZygote:
    """A judge zygote the worker's judge master forked for this process: one connection carries the control line."""

    def __init__(self, path: str) -> None:
        self.pid = 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.settimeout(10)
            self.sock.connect(path)
            self.sock.sendall(b'{"op": "judge"}\n')
            self.sock.settimeout(None)
        except OSError:
            self.sock.close()
            raise

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def fileno(self) -> int:
        return self.sock.fileno()

    def alive(self) -> bool:
        """Whether the connection is still up (a zygote that died, or whose master did, has closed it)."""
        if self.sock.fileno() < 0:
            return False
        try:
            return self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
        except BlockingIOError:
            return True  # nothing to read, not closed
        except OSError:
            return False

    def close(self) -> None:
        self.sock.close()  # the zygote's jobs end: it stops its sandboxes and leaves
        deadline = time.monotonic() + 30
        while self.pid and _running(self.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.pid and _running(self.pid):
            _kill(self.pid)


class WarmJudge:
    """A zygote that forks a judge per job; restarted when it dies. One job at a time per instance.

    In a worker whose main process started a judge master (`start_master`), the zygote is forked by the master;
    elsewhere (or when the master cannot be reached) it is a process of this one's own.
    """

    last_stderr = "(the zygote's stderr goes to the worker's log)"

    def __init__(self) -> None:
        self._zygote: _OwnZygote | _ForkedZygote | None = None
        self._buffer = b""
        self._lock = threading.Lock()

    def _start(self) -> _OwnZygote | _ForkedZygote:
        if self._zygote is not None and self._zygote.alive():
            return self._zygote
        self.close()
        self._buffer = b""
        master = os.environ.get(MASTER_ENV)
        if master:
            try:
                self._zygote = _ForkedZygote(master)
            except OSError as exc:
                log.warning("the judge master at %s is not there (%s): this process starts a judge zygote of its "
                            "own", master, exc)
        if self._zygote is None:
            self._zygote = _OwnZygote()
        self._zygote.pid = int(self._event(time.monotonic() + ZYGOTE_START_TIMEOUT, "ready")["ready"])
        return self._zygote

    def _event(self, deadline: float, key: str) -> dict[str, Any]:
        """The next control line carrying `key`, or InfrastructureError when the zygote dies or time is up."""
        assert self._zygote is not None
        fd = self._zygote.fileno()
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
                try:
                    chunk = os.read(fd, 65536)
                except ConnectionResetError:
                    chunk = b""
                if not chunk:
                    self.close()
                    raise InfrastructureError("the judge zygote died")
                self._buffer += chunk

    def run(self, job: dict[str, Any], timeout: float) -> None:
        """Fork a judge for `job` and wait for it; a judge that overruns `timeout` is killed."""
        with self._lock:
            try:
                zygote = self._start()
            except TimeoutError as exc:
                self.close()
                raise InfrastructureError("the judge zygote did not start") from exc
            line = (json.dumps(job) + "\n").encode()
            try:
                zygote.send(line)
            except OSError:
                # It went before the job reached it (its master died, say): nothing was started, so a new
                # zygote takes the job.
                self.close()
                try:
                    self._start().send(line)
                except (OSError, TimeoutError) as exc:
                    self.close()
                    raise InfrastructureError(f"the judge zygote is gone: {exc}") from exc
            backstop = Backstop(job, timeout)
            try:
                # Before it forks the job's judge, the zygote may start a sandbox zygote or collect the tests
                # (each with a limit of its own): a slow start on a busy host is not a dead zygote.
                started = self._event(backstop.deadline(), "started")
            except TimeoutError as exc:
                self.close()
                raise InfrastructureError("the judge zygote did not fork a judge") from exc
            while True:
                try:
                    self._event(backstop.deadline(), "done")
                    return
                except TimeoutError as exc:
                    if not backstop.passed():
                        continue  # the judge gave back time (sandbox starts, imports again) meanwhile
                    _kill(int(started["started"]))
                    try:
                        self._event(time.monotonic() + 30, "done")
                    except TimeoutError:
                        self.close()
                    raise InfrastructureError(f"the judge did not finish within {backstop.describe()}") from exc

    def close(self) -> None:
        """Stop the zygote (its warm sandboxes go with it)."""
        zygote, self._zygote = self._zygote, None
        if zygote is not None:
            zygote.close()


def _running(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not: its parent, the master, may not have reaped it yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


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


class JudgeMaster:
    """A worker's judge master (`worker.engine.judge.master`), started by the worker's main process before its
    pool processes fork: they find its socket in GRADER_JUDGE_MASTER. Its stdin is its lifeline."""

    def __init__(self, slots: int) -> None:
        # mode 0700: only this user reaches the sockets. Not "grader-judge-": the host cleanup sweeps old ones of those.
        self.dir = tempfile.mkdtemp(prefix="grader-master-")
        self.socket_path = os.path.join(self.dir, "judge.sock")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "worker.engine.judge", "--master", self.dir, "--slots", str(slots)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=judge_env())
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], MASTER_START_TIMEOUT)
        line = self.proc.stdout.readline() if ready else b""
        self.proc.stdout.close()
        try:
            listening = json.loads(line or b"{}").get("listening")
        except ValueError:
            listening = None
        if not listening:
            self.stop()
            raise InfrastructureError("the judge master did not start")

    def forget(self) -> None:
        """In a process forked from the owner: let go of the lifeline without stopping the master."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.returncode = 0  # not this process's child: never waited for here

    def stop(self) -> None:
        """Close the lifeline and wait for the master to stop everything it started; remove its folder."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=45)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


_master: JudgeMaster | None = None


def start_master(slots: int) -> None:
    """In a worker's main process: start the judge master for its `slots` (unless judges are cold). A master
    that cannot start is logged, not fatal: each pool process then starts a judge zygote of its own."""
    global _master
    if os.environ.get("GRADER_WARM_JUDGE", "1") == "0" or _master is not None:
        return
    try:
        _master = JudgeMaster(slots)
    except (OSError, InfrastructureError) as exc:
        log.warning("no judge master (%s): each slot starts a judge zygote of its own", exc)
        return
    os.environ[MASTER_ENV] = _master.socket_path
    atexit.register(stop_master)


def forget_master() -> None:
    """In a pool process: the master belongs to the main process; drop the inherited lifeline."""
    global _master
    if _master is not None:
        _master.forget()
        _master = None


def stop_master() -> None:
    """In the worker's main process, at shutdown: stop the master (its judge zygotes and sandbox zygotes)."""
    global _master
    master, _master = _master, None
    if master is not None:
        master.stop()
        os.environ.pop(MASTER_ENV, None)
