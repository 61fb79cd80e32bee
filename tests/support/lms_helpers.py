"""Helpers for the LMS tests: a loopback webhook receiver, signing, an in-process Celery worker, polling.

Every server binds 127.0.0.1 on a free port, runs in a daemon thread and is shut down and closed by its
context manager; every wait is bounded.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from flask import Flask
from standardwebhooks.webhooks import Webhook

from grader.extensions import db


@dataclass
class Received:
    """One request a loopback server got."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


class LoopbackServer:
    """A ThreadingHTTPServer on 127.0.0.1:0 whose handler calls `self.handle(request) -> (status, headers,
    body)`; subclasses override `handle`. Use as a context manager."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            """Records each request and answers with `outer.handle`."""

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with outer.lock:
                    outer.received.append(request)
                status, headers, payload = outer.handle(request)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = _serve

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the test reports what matters."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:PORT"""
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def handle(self, request: Received) -> tuple[int, dict[str, str], bytes]:
        """Answer a request (override)."""
        return 404, {}, b""

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class Receiver(LoopbackServer):
    """The LMS's webhook endpoint: answers `script` status codes in order, then `then` forever."""

    def __init__(self, script: list[int] | None = None, then: int = 200) -> None:
        super().__init__()
        self.script, self.then = list(script or []), then

    @property
    def url(self) -> str:
        """Where events should be POSTed."""
        return self.base_url + "/hooks/grader"

    def handle(self, request: Received) -> tuple[int, dict[str, str], bytes]:
        """The next scripted status code."""
        with self.lock:
            status = self.script.pop(0) if self.script else self.then
        return status, {"Content-Type": "text/plain"}, b"ok" if status < 300 else b"receiver is failing"


def verified(request: Received, secret: str) -> dict[str, Any]:
    """A received event's body, after checking its Standard Webhooks signature with the outbound secret."""
    return Webhook(secret).verify(request.body, request.headers)


def free_port_url() -> str:
    """A loopback URL where nothing listens (a receiver that is down for good: connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks/grader"


def signed_headers(secret: str, body: bytes, msg_id: str | None = None, when: datetime | None = None) -> dict[str, str]:
    """Standard Webhooks headers for `body`, signed with `secret` (as an LMS would send them)."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    when = when or datetime.now(UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, when, body.decode()),
        "content-type": "application/json",
    }


def submission_body(content: bytes, external_id: str = "canvas-user-42", email: str = "ada@example.edu",
                    assignment: str = "autograd", name: str = "solution.py", submitted_at: str | None = None) -> bytes:
    """The inbound JSON an LMS sends (with the LMS's own `submitted_at` when given)."""
    message: dict[str, Any] = {
        "user": {"external_id": external_id, "email": email},
        "assignment": assignment,
        "files": {name: base64.b64encode(content).decode()},
    }
    if submitted_at is not None:
        message["submitted_at"] = submitted_at
    return json.dumps(message).encode()


def wait_until(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll `check` (after refreshing the session's view of the database) until truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        db.session.rollback()  # a fresh snapshot: the worker thread commits in its own session
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


@contextmanager
def embedded_worker(app: Flask) -> Iterator[None]:
    """Run a real Celery worker (solo pool, in a thread) for `app`, whose BROKER_URL must be memory://.

    It honours countdowns, so retry delays really elapse between attempts. `grader worker` runs its pool
    inside an app context; this thread has none, so each task gets a fresh one (its own database session).
    """
    from celery.contrib.testing.worker import start_worker
    from celery.signals import task_postrun, task_prerun

    contexts = threading.local()

    def push(**_: Any) -> None:
        """Before a task: a fresh app context for it."""
        contexts.current = app.app_context()
        contexts.current.push()

    def pop(**_: Any) -> None:
        """After a task: drop its session and context."""
        context = getattr(contexts, "current", None)
        if context is not None:
            db.session.remove()
            context.pop()
            contexts.current = None

    task_prerun.connect(push, weak=False)
    task_postrun.connect(pop, weak=False)
    try:
        with start_worker(app.extensions["celery"], pool="solo", perform_ping_check=False, shutdown_timeout=10):
            yield
    finally:
        task_prerun.disconnect(push)
        task_postrun.disconnect(pop)
