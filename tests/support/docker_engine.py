"""Restart this machine's Docker engine for real, as a worker host's Docker upgrade or crash does: dockerd gets
SIGTERM (it stops every container, the sandbox zygotes' included), stays down a while, and is started again
with the same command line. Only for tests that ask for it (they restart the engine every other test uses).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
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


def restart_docker_engine(down: float, log: Path, timeout: float = 90.0) -> float:
    """Stop dockerd, wait `down` seconds, start it again as it was; the seconds the engine did not answer."""
    pid, argv = _dockerd()
    os.kill(pid, signal.SIGTERM)
    stopped = time.monotonic()
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() - stopped > timeout:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    time.sleep(down)
    with log.open("ab") as output:
        _STARTED.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                         start_new_session=True))
    while not docker_available():
        if time.monotonic() - stopped > timeout + down:
            raise RuntimeError(f"dockerd did not come back; its log: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.2)
    return time.monotonic() - stopped
