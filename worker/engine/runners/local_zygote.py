"""A sandbox zygote as a local process, for the local runner: its children confine themselves on this host.

The zygote itself runs with this process's privileges (it never runs student code); as root its children each
take a uid of their own, otherwise a user namespace stands in. Its stdin is its lifeline: when this process
closes it, or dies, the zygote kills its children and exits.

Where the host allows it (root, cgroup v1), the zygote runs in memory, pids and CPU cgroups of its own, sized as a
zygote container would be, and each child it hands out moves on into cgroups of its own below them, as a Docker
zygote's do (`worker/engine/runners/child_cgroup.py`): one child's processes together can fill only its share.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

from worker.engine.errors import InfrastructureError
from worker.engine.runners import child_cgroup
from worker.engine.runners.base import SANDBOX_SOURCE, SandboxSpec
from worker.engine.runners.forked import ZygoteHandle, jail_config

log = logging.getLogger(__name__)


class LocalZygote(ZygoteHandle):
    """`python worker/sandbox/zygote.py` beside this process, its socket in a private folder."""

    def __init__(self, spec: SandboxSpec, python: str, env: dict[str, str], expose: list[str],
                 uid_range: tuple[int, int] | None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="grader-zyg-"))  # ours alone: the socket, the cgroups' record
        (self.dir / "sock").mkdir()
        self.socket_path = str(self.dir / "sock" / "zygote.sock")
        # The zygote has imported everything of ours a child needs: the repository stays out of its root.
        config = jail_config(spec, expose, uid_range)
        self._log = (self.dir / "zygote.log").open("wb")
        self.cgroup = child_cgroup.local_cgroup(child_cgroup.zygote_limits(spec), child_cgroup.ZYGOTE_PREFIX,
                                                "local sandbox zygote")
        try:
            self.proc = subprocess.Popen(
                [python, "-I", "-B", str(SANDBOX_SOURCE / "zygote.py"), "--socket", self.socket_path,
                 "--config", json.dumps(config)],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log, env=env, cwd=self.dir)
        except OSError as exc:
            self._log.close()
            self._remove()
            raise InfrastructureError(f"the sandbox did not start: no local sandbox zygote ({exc})") from exc
        if self.cgroup is not None:
            try:
                # It imports torch for seconds before it forks a child: every child starts in these cgroups.
                self.cgroup.move(self.proc.pid)
                child_cgroup.write_record(self.dir, child_cgroup.slot_record(self.cgroup.dirs, spec, level=0))
            except OSError as exc:
                self.stop()
                raise InfrastructureError(f"the local sandbox zygote got no cgroups of its own: {exc}") from exc

    def alive(self) -> bool:
        """Whether the zygote process still runs."""
        return self.proc.poll() is None

    def last_words(self) -> str:
        """The end of the zygote's log."""
        try:
            return (self.dir / "zygote.log").read_text(errors="replace")[-1500:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Close the lifeline and ask the zygote to stop (it kills its children and exits); remove its folder.

        SIGTERM as well as the closed lifeline: a process forked from ours (a collecting judge, a judge) holds a
        copy of the lifeline's write end, so the zygote may not see it close until that process is gone.
        """
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()
        self._remove()

    def _remove(self) -> None:
        """Remove the zygote's folder and cgroups (its processes are gone)."""
        if self.cgroup is not None and not self.cgroup.remove():
            log.warning("the local sandbox zygote's cgroups %s are not empty yet; the next zygote's start removes "
                        "them", self.cgroup.dirs)
        shutil.rmtree(self.dir, ignore_errors=True)
