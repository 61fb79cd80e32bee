"""More than one host: a worker in a network namespace and a mount namespace of its own, reaching Redis and
PostgreSQL only over a veth pair, with no view of the web's GRADER_HOME, grades an upload the web accepted.

Needs root, `ip` and `unshare` (as on CI). The namespace, the veth pair (10.213.x.1/30 ↔ .2/30, a private
range, only on the pair this test creates), Redis, the PostgreSQL relay and the worker are removed afterwards.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flask_migrate import upgrade
from sqlalchemy.engine import make_url

from grader.extensions import db
from tests.conftest import (
    REFERENCE_SOLUTION,
    fresh_postgres_database,
    isolated_app,
    make_world,
    require_service,
    service_config,
    service_env,
    upload,
)
from tests.support.recovery_support import (
    FAST_RECOVERY,
    Watcher,
    assert_graded_exactly_once,
    redis_server,
    spawn,
    wait_ready,
)


def sh(*args: str) -> None:
    """Run an `ip` command; fail loudly."""
    subprocess.run(args, check=True, capture_output=True, timeout=20)


@contextmanager
def veth_namespace() -> Iterator[tuple[str, str, str]]:
    """(namespace name, host address, namespace address): a fresh netns joined to this one by a veth pair."""
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("unshare"):
        require_service("network namespaces", "this test needs root, ip and unshare")
    tag = secrets.token_hex(3)
    namespace, host_end, inner_end = f"grader-t{tag}", f"gvh{tag}", f"gvw{tag}"
    subnet = int(tag[:2], 16) % 250 + 1
    host_ip, inner_ip = f"10.213.{subnet}.1", f"10.213.{subnet}.2"
    sh("ip", "netns", "add", namespace)
    try:
        sh("ip", "link", "add", host_end, "type", "veth", "peer", "name", inner_end)
        sh("ip", "link", "set", inner_end, "netns", namespace)
        sh("ip", "addr", "add", f"{host_ip}/30", "dev", host_end)
        sh("ip", "link", "set", host_end, "up")
        sh("ip", "netns", "exec", namespace, "ip", "addr", "add", f"{inner_ip}/30", "dev", inner_end)
        sh("ip", "netns", "exec", namespace, "ip", "link", "set", inner_end, "up")
        sh("ip", "netns", "exec", namespace, "ip", "link", "set", "lo", "up")
        yield namespace, host_ip, inner_ip
    finally:
        subprocess.run(["ip", "link", "del", host_end], capture_output=True, timeout=20, check=False)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=20, check=False)


@contextmanager
def tcp_relay(listen: str, target: tuple[str, int]) -> Iterator[int]:
    """Relay TCP from `listen`:port (returned) to `target`: how the worker host reaches this host's PostgreSQL,
    which listens on loopback only."""
    server = socket.create_server((listen, 0))
    server.settimeout(0.5)
    stop = threading.Event()

    def pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                end.close()

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(target, timeout=10)
            upstream.settimeout(None)
            client.settimeout(None)
            opened.extend((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                pipes.append(threading.Thread(target=pipe, args=(a, b), daemon=True))
                pipes[-1].start()

    opened: list[socket.socket] = []
    pipes: list[threading.Thread] = []
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()
        for end in opened:
            end.close()
        for pipe_thread in pipes:
            pipe_thread.join(timeout=5)


def test_a_worker_on_another_host_needs_no_shared_disk(tmp_path: Path) -> None:
    """Does a worker in its own network and mount namespaces, reaching Redis and PostgreSQL only over a veth
    pair and unable to see the web's GRADER_HOME, grade an upload (the file comes from the database)?"""
    with veth_namespace() as (namespace, host_ip, _inner_ip), fresh_postgres_database() as database, \
            redis_server(tmp_path / "redis", bind=host_ip) as redis:
        pg = make_url(database)
        with tcp_relay(host_ip, (pg.host or "127.0.0.1", pg.port or 5432)) as relay_port:
            web_home = tmp_path / "web-home"
            config = service_config(web_home, SQLALCHEMY_DATABASE_URI=database, BROKER_URL=redis.url,
                                    RATELIMIT_STORAGE_URI=redis.url)
            app = isolated_app(config)
            with app.app_context():
                upgrade()
                world = make_world()
            worker_home = tmp_path / "worker-home"
            env = service_env(app.config) | FAST_RECOVERY
            env.update(GRADER_HOME=str(worker_home), SUBMISSIONS_DIR=str(worker_home / "submissions"),
                       DATABASE_URL=pg.set(host=host_ip, port=relay_port).render_as_string(hide_password=False))
            # The worker's own mount namespace: the web's home is covered by an empty tmpfs before it starts.
            script = (f'mount -t tmpfs grader-hidden "{web_home}" && echo "web home entries: $(ls -A "{web_home}" '
                      f'| wc -l)" && exec "$0" "$@"')
            prefix = ["ip", "netns", "exec", namespace, "unshare", "--mount", "--propagation", "private",
                      "sh", "-c", script]
            worker = spawn(["worker", "--queues", "cpu,gpu", "--concurrency", "1"], env, tmp_path / "worker.log",
                           prefix=prefix)
            try:
                wait_ready(worker)
                assert "web home entries: 0" in worker.output()
                with app.app_context():
                    watcher = Watcher(app, world.student.headers)
                    response = upload(app.test_client(), "autograd", REFERENCE_SOLUTION.read_bytes(),
                                      headers=world.student.headers)
                    assert response.status_code == 202, response.json
                    watcher.add(response.json["id"])
                    started = time.monotonic()
                    watcher.wait_all_graded(240)
                    print(f"\nremote worker graded the upload in {time.monotonic() - started:.1f} s")
                    watcher.assert_truthful()
                    assert_graded_exactly_once(app, [response.json["id"]])
                    db.session.remove()
                assert (web_home / "secret_key").exists()  # the web's home is there, only not for the worker
            except BaseException:
                print(worker.output()[-4000:])
                raise
            finally:
                worker.stop()
                with app.app_context():
                    db.session.remove()
                    db.engine.dispose()

