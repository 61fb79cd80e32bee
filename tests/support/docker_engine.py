"""Restart this machine's Docker engine for real, as a worker host's Docker upgrade or crash does: dockerd gets
SIGTERM (it stops every container, the sandbox zygotes' included), stays down a while, and is started again
with the same command line. Only for tests that ask for it (they restart the engine every other test uses).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from worker.engine.runners.docker import docker_available

# The engines started here outlive the test that restarted them (every later test uses them): their handles
# stay here, never collected while the process runs.
_STARTED: list[subprocess.Popen[bytes]] = []


def _dockerd() -> tuple[int, list[bytes]]:
    """The running dockerd's pid and command line."""
    found = subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True).stdout.split()
    if not found:
        raise RuntimeError("no dockerd runs on this machine")
    pid = int(found[0])
    return pid, Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]


def stop_docker_engine(timeout: float = 90.0) -> list[bytes]:
    """Stop dockerd (SIGTERM: it stops every container) and wait until it is gone; its command line, for
    `start_docker_engine`."""
    pid, argv = _dockerd()
    os.kill(pid, signal.SIGTERM)
    stopped = time.monotonic()
    while _alive(pid):
        if time.monotonic() - stopped > timeout:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    return argv


def _alive(pid: int) -> bool:
    """Whether process `pid` still runs. An engine an earlier test started is our child: reaped here, or it would
    stay a zombie whose /proc entry never goes."""
    for started in _STARTED:
        if started.pid == pid:
            return started.poll() is None
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def start_docker_engine(argv: list[bytes], log: Path, timeout: float = 90.0) -> None:
    """Start dockerd with command line `argv` and wait until it answers."""
    started = time.monotonic()
    with log.open("ab") as output:
        _STARTED.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                         start_new_session=True))
    while not docker_available():
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"dockerd did not come back; its log: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.2)


@contextmanager
def docker_engine_down(log: Path, timeout: float = 90.0) -> Iterator[Callable[[float], None]]:
    """Stop dockerd for the block and start it again as it was afterwards (also when the block fails). The block
    gets `hold(seconds)`: sleep until the engine has been down that long."""
    argv = stop_docker_engine(timeout)
    stopped = time.monotonic()

    def hold(seconds: float) -> None:
        time.sleep(max(0.0, seconds - (time.monotonic() - stopped)))

    try:
        yield hold
    finally:
        start_docker_engine(argv, log, timeout)


def restart_docker_engine(down: float, log: Path, timeout: float = 90.0) -> float:
    """Stop dockerd, wait `down` seconds, start it again as it was; the seconds the engine did not answer."""
    stopped = time.monotonic()
    with docker_engine_down(log, timeout) as hold:
        hold(down)
    return time.monotonic() - stopped
