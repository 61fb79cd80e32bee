"""A PostgreSQL server of a test's own: a fresh cluster (`initdb`) on a free loopback port, which the test can
crash (`pg_ctl stop -m immediate`: every backend killed, no checkpoint) and start again (crash recovery
replays the log), as a database fails over or restarts on a deadline night. The shared server on 5432 is never
touched.

As root, the cluster belongs to the `postgres` user (PostgreSQL refuses to run as root), in a folder of its own
under the system's temporary directory (pytest's folders are private to root).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import require_service
from tests.support.recovery_support import free_port

DATABASE = "grader"


def _bindir() -> Path | None:
    """The newest installed PostgreSQL server's programs (Debian keeps them out of PATH)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class PostgresServer:
    """One cluster in `datadir`, listening on 127.0.0.1:`port` (and a socket in `datadir`)."""

    bindir: Path
    datadir: Path
    port: int

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the test's database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, program: str, *args: str) -> None:
        as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        done = subprocess.run([*as_owner, str(self.bindir / program), *args], capture_output=True, text=True,
                              timeout=120, cwd="/")
        if done.returncode != 0:
            log = self.datadir.parent / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{program} {' '.join(args)} failed: {done.stdout}{done.stderr}{tail}")

    def init(self) -> None:
        """Create the cluster (trust authentication, no fsync: nothing here must survive the machine)."""
        self._run("initdb", "-D", str(self.datadir), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        """Start it and wait until it accepts connections (after crash recovery, if it crashed)."""
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.datadir} "
                   "-c fsync=off -c full_page_writes=off -c max_connections=60")
        self._run("pg_ctl", "-D", str(self.datadir), "-o", options, "-l", str(self.datadir.parent / "server.log"),
                  "-w", "-t", "60", "start")

    def crash(self) -> None:
        """Stop it the hard way: every backend killed at once, no checkpoint, every client's connection cut."""
        self._run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        """Stop it if it runs (fast shutdown: connections cut, a clean checkpoint)."""
        if (self.datadir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop")


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A running PostgreSQL server of the test's own with an empty database `grader`; removed at the end."""
    import sqlalchemy as sa

    bindir = _bindir()
    if bindir is None:
        require_service("a PostgreSQL server of the test's own", "initdb is not installed")
        raise AssertionError("unreachable")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            require_service("a PostgreSQL server of the test's own", "as root it needs the 'postgres' user")
    root = Path(tempfile.mkdtemp(prefix="grader-pg-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
        server = PostgresServer(bindir, root / "data", free_port())
        server.init()
        server.start()
        admin = sa.create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{server.port}/postgres",
                                 isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text(f"CREATE DATABASE {DATABASE}"))
        admin.dispose()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
