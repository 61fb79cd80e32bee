"""`grader serve` (web + worker + beat in one command), `grader worker` (a worker alone), `grader beat`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import click
from celery.exceptions import SecurityWarning
from flask import Flask, current_app
from flask.cli import with_appcontext
from flask_migrate import upgrade

from grader.cli.errors import CLIError

QUEUES = ("cpu", "gpu")
WORKER_SLOT_MB = 400  # a slot's share of its worker: pool process, judge zygote, collecting judge (~330 MB PSS)
# Where a process reads its memory cgroup's limit (v2, then v1): in a container, the container's own.
CGROUP_MEMORY_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def parse_queues(value: str) -> list[str]:
    """"cpu,gpu" → ["cpu", "gpu"]; anything else is a one-line error."""
    queues = [q.strip() for q in value.split(",") if q.strip()]
    unknown = sorted(set(queues) - set(QUEUES))
    if not queues or unknown:
        raise CLIError(f"--queues takes a comma-separated subset of {','.join(QUEUES)}, not {value!r}")
    return queues


def default_concurrency() -> int:
    """One grading slot per CPU, as many as its memory (`usable_memory`) holds at once, and at least one.

    A grading's judge and sandbox take turns, so one slot keeps little more than one CPU busy: on a 2-core machine
    (`bench/bench_service.py`, 80-upload bursts, alternated runs) one slot graded 3.8-4.4 submissions/s, two
    5.1-5.6/s, three no more than two. Half the CPUs, the default before, gave such a machine one slot.
    """
    return max(1, min(os.cpu_count() or 1, usable_memory() // slot_memory_bytes()))


def slot_memory_bytes() -> int:
    """What one slot may hold at once: a sandbox at the default memory limit, the zygote container's room beside it
    for that slot (tmpfs, parked test processes) and the slot's share of the worker."""
    from worker.engine.manifest import Limits
    from worker.engine.runners.child_cgroup import SLOT_MEMORY_MB

    return (Limits().memory_mb + SLOT_MEMORY_MB + WORKER_SLOT_MB) * 1024 * 1024


def usable_memory() -> int:
    """The machine's memory in bytes, or its memory cgroup's limit where that is lower (a worker in a container
    with a memory limit); 0 when the system says neither (one slot)."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        memory = 0
    for path in CGROUP_MEMORY_LIMITS:
        try:
            limit = Path(path).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if limit.isdigit() and 0 < int(limit) and (not memory or int(limit) < memory):
            memory = int(limit)  # ("max", or v1's huge number at the root: no limit)
        break
    return memory


def prepare_database() -> None:
    """Bring the schema to head and refresh attached assignments from their packs."""
    from grader.database import db
    from grader.services.assignments import sync_all

    upgrade()
    sync_all()
    db.session.commit()
    # The web server forks after this: its children must open their own connections.
    db.session.remove()
    for engine in db.engines.values():
        engine.dispose()


def prepare_runner() -> str:
    """Resolve GRADER_RUNNER; for docker, make sure the runner image exists before taking any task."""
    from grader.config import resolve_runner
    from worker.engine.errors import InfrastructureError

    name = resolve_runner(current_app.config["GRADER_RUNNER"], announce=True)
    if name == "docker":
        from worker.engine.image import ensure_image

        click.echo("grader: checking the runner image (the first build takes a few minutes)", err=True)
        try:
            image = ensure_image()
        except InfrastructureError as exc:
            raise CLIError(f"the docker runner is not ready: {exc}") from exc
        click.echo(f"grader: runner image {image}", err=True)
    return name


def _quiet_root_warning(celery: Any) -> None:
    """Keep Celery's warning against root ("absolutely not recommended") out of the worker's output: it is about
    tasks sent as pickle, which could run code. Ours take JSON only (Celery itself refuses to start as root
    otherwise), and the worker says why it is root instead."""
    if set(celery.conf.accept_content) == {"json"}:
        warnings.filterwarnings("ignore", message="You're running the worker with superuser privileges",
                                category=SecurityWarning)


@click.command("worker")
@click.option("--queues", default="cpu,gpu", show_default=True, help="Queues to consume (cpu, gpu or both).")
@click.option("--concurrency", type=click.IntRange(min=1), default=None,
              help="Parallel gradings [one per CPU, as many as memory holds].")
@click.option("--loglevel", default="INFO", show_default=True)
@with_appcontext
def worker_command(queues: str, concurrency: int | None, loglevel: str) -> None:
    """Run a grading worker (start more of these, on more hosts, to scale out)."""
    names = parse_queues(queues)
    # `auto` is decided once, here: a worker that started on Docker must never grade on the host's own Python
    # (another isolation, another torch) because its engine stopped answering; it waits for the engine instead.
    current_app.config["GRADER_RUNNER"] = prepare_runner()
    celery = current_app.extensions["celery"]
    if os.geteuid() == 0:
        _quiet_root_warning(celery)
        why = "drives dockerd" if current_app.config["GRADER_RUNNER"] == "docker" else "makes each sandbox's cgroups"
        click.echo(f"grader: the worker runs as root ({why}); it takes JSON tasks only, and no submission runs as root",
                   err=True)
    celery.worker_main([
        "worker",
        "--queues", ",".join(names),
        "--concurrency", str(concurrency or default_concurrency()),
        "--loglevel", loglevel,
        "--hostname", f"grader-{'-'.join(names)}-{os.getpid()}@%h",
        "--without-gossip",
        "--without-mingle",
    ])


@click.command("beat")
@click.option("--loglevel", default="INFO", show_default=True)
@with_appcontext
def beat_command(loglevel: str) -> None:
    """Run the periodic jobs (recovery sweeps, LMS retries, cleanup); run exactly one per deployment."""
    celery = current_app.extensions["celery"]
    celery.start(["beat", "--scheduler", "worker.process:InProcessScheduler", "--loglevel", loglevel,
                  "--max-interval", "5"])


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--concurrency", type=click.IntRange(min=1), default=None,
              help="Worker's parallel gradings [one per CPU, as many as memory holds].")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(min=1), help="Web threads.")
@with_appcontext
def serve_command(host: str, port: int, concurrency: int | None, threads: int) -> None:
    """Run migrations, then the web app, a worker (all queues) and beat (the periodic jobs) in one command."""
    prepare_database()
    worker = _start_worker(concurrency)
    beat = subprocess.Popen([sys.executable, "-m", "grader", "beat", "--loglevel", "WARNING"])
    click.echo(f"grader: serving on http://{host}:{port} (worker pid {worker.pid}, beat pid {beat.pid}); "
               "Ctrl-C stops all three", err=True)
    try:
        _run_web(host, port, threads)
    finally:
        _stop(beat)
        _stop(worker)


def _start_worker(concurrency: int | None) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "grader", "worker", "--queues", ",".join(QUEUES)]
    if concurrency:
        args += ["--concurrency", str(concurrency)]
    # The children read the same environment, so they find the same database, broker and GRADER_HOME.
    return subprocess.Popen(args)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)  # Celery's warm shutdown: finish the running gradings
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _run_web(host: str, port: int, threads: int) -> None:
    """Serve under gunicorn: one process (the embedded rate-limit counters live in memory), several threads."""
    from gunicorn.app.base import BaseApplication

    class _Embedded(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            settings: dict[str, Any] = {"bind": f"{host}:{port}", "workers": 1, "threads": threads,
                                        "accesslog": "-", "timeout": 120}
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> Flask:
            from grader.app import create_app

            return create_app()

    _Embedded().run()


def register(group: click.Group) -> None:
    """Add `serve` and `worker` to `group`."""
    group.add_command(serve_command)
    group.add_command(worker_command)
    group.add_command(beat_command)
