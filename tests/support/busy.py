"""A machine made busy for real: processes that spin on every core, for tests of verdicts under load."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def busy_cores(times: int) -> Iterator[None]:
    """Every core busy `times` over (that many spinning processes per core, each ending by itself within 10
    minutes should the test die) while the block runs; they are killed after it. Each is a session of its own,
    as other programs on a worker host are: where the kernel shares a CPU between sessions (autogroups), load in
    one session would slow only that session, and a sandbox (a session of its own) would hardly notice it."""
    spin = "import time\nend = time.time() + 600\nwhile time.time() < end: pass"
    burners = [subprocess.Popen([sys.executable, "-c", spin], start_new_session=True)
               for _ in range(times * (os.cpu_count() or 2))]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
