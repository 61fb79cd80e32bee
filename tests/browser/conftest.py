"""Fixtures for the browser tests: the real service (`grader demo` + `grader serve`, web and a Celery worker
grading with the local runner) on a loopback port, and Debian's Chromium driven by Playwright.

Chromium is never downloaded: the tests use /usr/bin/chromium (CI installs it with apt) and fail with a plain
message when it is missing.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, service_config, service_env

CHROMIUM = Path(os.environ.get("GRADER_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
SCREENSHOTS = REPO / "test-output" / "screenshots"


@dataclass
class LiveService:
    """A running `grader serve` and what is needed to use and inspect it."""

    base_url: str
    config: dict[str, Any]
    assignments: Path  # the service's copy of reference_tests/ (a test may change its tests)
    logins: dict[str, tuple[str, str]]  # demo key → (email, password)
    log: Path
    process: subprocess.Popen[bytes]
    pages_seen: list[str] = field(default_factory=list)

    def output(self) -> str:
        """What the web server and its worker printed so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def full_config(overrides: dict[str, Any]) -> dict[str, Any]:
    """Every setting, as `create_app` would compute it from the defaults plus `overrides`."""
    from grader.config import finalize, load_config

    config = load_config({})
    config.update(overrides)
    finalize(config)
    return config


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, service: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    """Poll /healthz until it answers 200; fail with the server's output if it dies or stays down."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.poll() is not None:
            pytest.fail(f"grader serve exited with {service.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=3) as response:  # noqa: S310  (loopback)
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"grader serve was not healthy within {timeout} s:\n{log.read_text(errors='replace')[-4000:]}")


def demo_logins(env: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Run `grader demo` and read its `KEY-login: EMAIL PASSWORD` lines."""
    result = subprocess.run([sys.executable, "-m", "grader", "demo"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    logins = {}
    for line in result.stdout.splitlines():
        key, _, rest = line.partition("-login: ")
        if rest:
            email, password = rest.split()
            logins[key] = (email, password)
    assert {"instructor", "student", "student2"} <= set(logins), result.stdout
    return logins


@pytest.fixture(scope="module")
def live_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """`grader serve` on a free loopback port with the demo course, grading for real with the local runner."""
    home = tmp_path_factory.mktemp("grader-home")
    assignments = home / "reference_tests"
    shutil.copytree(REPO / "reference_tests", assignments)
    config = full_config(service_config(home, GRADER_ASSIGNMENTS=str(assignments),
                                        SECRET_KEY=secrets.token_hex(16)))
    env = service_env(config)
    logins = demo_logins(env)
    port = free_port()
    log = home / "serve.log"
    with log.open("wb") as handle:
        # Its own session (process group), so teardown can stop the web server and the worker it started.
        process = subprocess.Popen(
            [sys.executable, "-m", "grader", "serve", "--host", "127.0.0.1", "--port", str(port), "--concurrency",
             "2"], cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base_url, process, log)
        yield LiveService(base_url, config, assignments, logins, log, process)
    finally:
        _stop_group(process)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server (it stops its worker), then SIGKILL whatever of its group is left."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium under Playwright (never a downloaded browser)."""
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM}: install it with `apt-get install chromium` "
                    "(scripts/test does this); the browser tests never download a browser")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def screenshots() -> Path:
    """test-output/screenshots/ at the repository root (gitignored), emptied for this run."""
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    return SCREENSHOTS
