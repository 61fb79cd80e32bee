"""The sandbox zygote: imports torch and the student server once, then forks one confined child per request.

It lives inside the isolation boundary (a long-lived hardened container per worker, or a plain process for the
local runner) and never runs submission code. It keeps a child pre-forked and confined per slot it serves, so
namespace creation is off the request path. A judge connects to its Unix socket and sends one JSON line,
`{"op": "spawn"}`; the zygote answers `{"ok": true, "pid": n}` with two descriptors attached (SCM_RIGHTS): the
judge's end of a socketpair whose other end is the child's frame channel, and the read end of the child's stderr.
That connection is the child's lease: when the judge closes it (or dies), or sends `{"op": "kill"}`, the child's
namespace init is killed, and with it everything it started. On `{"op": "usage"}` the zygote answers what the child
has had of the CPUs (`cpuuse.py`), numbered; on `{"op": "interrupt"}` it sends the init SIGUSR1 (`testsignals.py`).
When the child ends first, the zygote writes `{"exit": code}` on the lease (128 + the signal, for a child killed by
one). The zygote reads nothing any child wrote, except the pid its own code in the intermediate process reports
before anything else runs there; it exits when its stdin (the owner's lifeline) closes. Standard library and torch
only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import signal
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from typing import NoReturn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpuuse
import forkready
import globalstate
import jail
import seccomp_filter
import student_server

SPAWN_LINE_LIMIT = 4096
USAGE, INTERRUPT = b'{"op": "usage"}', b'{"op": "interrupt"}'  # what a lease may ask without ending its child


@dataclass
class Child:
    """A confined child: its namespace init's pid, the waiter that is its parent, our ends of its descriptors."""

    pid: int
    waiter: int
    channel: socket.socket
    stderr: int


def _report_pid(fd: int, pid: int) -> None:
    os.write(fd, str(pid).encode())
    os.close(fd)


def _read_report(fd: int) -> int | None:
    """The init's pid, as the waiter (our code, before any other) wrote it: digits only, or nothing."""
    try:
        data = b""
        while len(data) <= 16:
            chunk = os.read(fd, 32)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    return int(data) if data.isdigit() and len(data) <= 16 else None


def _child_main(config: jail.JailConfig, channel: socket.socket, stderr_w: int, report_w: int) -> None:
    """In the waiter: a session and namespaces of its own, fork the namespace's init, report its pid, wait for it
    and exit alike.

    The waiter runs only our code. It dies with the zygote (parent-death signal), and the init dies with the
    waiter, so a zygote killed outright takes every child with it.
    """
    try:
        jail.close_fds(keep=(channel.fileno(), stderr_w, report_w))
        jail.die_with_parent()
        os.setsid()  # a session of its own, so an autogroup of its own: `cpuuse.py`
        jail.unshare(user=config.uid_range is None)
        pid = os.fork()
        if pid:
            _report_pid(report_w, pid)
            channel.close()
            os.close(stderr_w)
            _, status = os.waitpid(pid, 0)
            os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
        os.close(report_w)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(stderr_w, 1)
        os.dup2(stderr_w, 2)
        os.close(null)
        os.close(stderr_w)
        jail.confine(config)
        globalstate.reseed()  # no two children share random state
    except BaseException as exc:  # never fall back into the zygote's loop
        _exit_saying(f"sandbox child: confinement failed: {exc}\n", 70)
    try:
        serve_channel(channel, cpu_seconds=config.cpu_seconds)
    except BaseException:  # a crash of the server's: said as a fresh sandbox's Python says it, never as exit 0
        _exit_saying(traceback.format_exc(), 1)
    os._exit(0)


def _exit_saying(text: str, code: int) -> NoReturn:
    """Write `text` straight to the sandbox's stderr (fd 2: whatever `sys.stderr` the submission left in place)
    and end this process with `code`, whether or not the write went through."""
    try:
        os.write(2, text.encode("utf-8", "replace"))
    finally:
        os._exit(code)


class _SocketWriter:
    """The write/flush pair Server uses, over a socket (sendall: a frame is never sent in part)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def flush(self) -> None:
        pass

    def fileno(self) -> int:
        """The channel's descriptor, as a pipe's writer would have one (nothing here relies on hiding it)."""
        return self.sock.fileno()


def serve_channel(sock: socket.socket | int, cpu_seconds: float = 0) -> None:
    """Serve the judge on a socket handed over by the sandbox zygote (already confined, in /work)."""
    student_server.WORK_DIR = os.getcwd()
    if isinstance(sock, int):
        sock = socket.socket(fileno=sock)
    sock.setblocking(True)
    sys.stdout = sys.stderr
    import torch

    server = student_server.Server(sock.makefile("rb", buffering=0), _SocketWriter(sock))
    server.cpu_seconds = max(1, round(cpu_seconds)) if cpu_seconds else 0
    server.send({"ready": True, "pid": os.getpid(), "torch": torch.__version__})
    server.serve()


class Zygote:
    """Pre-forks confined children and hands them to judges over its socket."""

    def __init__(self, config: jail.JailConfig, listener: socket.socket) -> None:
        self.config = config
        self.listener = listener
        self.idle: list[Child] = []  # confined and waiting, oldest first
        self.leases: dict[socket.socket, Child] = {}
        self.waits: dict[socket.socket, cpuuse.Waits] = {}  # per lease: its child's waits
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)

    def prefork(self) -> Child | None:
        """Fork and confine the next child now; None (logged) when the host refuses (say, out of pids)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        stderr_r, stderr_w = os.pipe()
        report_r, report_w = os.pipe()
        try:
            pid = os.fork()
        except OSError as exc:
            for fd in (stderr_r, stderr_w, report_r, report_w):
                os.close(fd)
            ours.close()
            theirs.close()
            print(f"sandbox zygote: fork failed: {exc}", file=sys.stderr, flush=True)
            return None
        if pid == 0:
            signal.set_wakeup_fd(-1)
            for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(signum, signal.SIG_DFL)
            ours.close()
            _child_main(self.config, theirs, stderr_w, report_w)
        theirs.close()
        os.close(stderr_w)
        os.close(report_w)
        report = _read_report(report_r)
        if report is None:
            ours.close()
            os.close(stderr_r)
            print("sandbox zygote: a child failed to start", file=sys.stderr, flush=True)
            return None
        return Child(report, pid, ours, stderr_r)

    def serve(self) -> None:
        """Answer spawn requests until the lifeline (stdin) closes."""
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "signal")
        self.selector.register(sys.stdin.fileno(), selectors.EVENT_READ, "lifeline")
        print(json.dumps({"ready": os.getpid()}), file=sys.stderr, flush=True)
        self._refill()
        while True:
            for key, _ in self.selector.select(timeout=5.0):
                if key.data == "accept":
                    self._accept()
                elif key.data == "signal":
                    os.read(self.wake_r, 4096)
                elif key.data == "lifeline":
                    if not os.read(sys.stdin.fileno(), 4096):
                        self.shutdown()
                        return
                else:
                    self._lease_event(key.fileobj)  # type: ignore[arg-type]
            self._reap()
            self._refill()

    def _refill(self) -> None:
        """Keep children confined ahead, one per slot served: a submission takes one, the next is confined
        while it is graded (and another after a test crashed the last)."""
        while len(self.idle) < max(1, self.config.idle):
            child = self.prefork()
            if child is None:
                return
            self.idle.append(child)

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        conn.settimeout(5.0)
        try:
            line = conn.recv(SPAWN_LINE_LIMIT).split(b"\n", 1)[0]
            request = json.loads(line)
        except (OSError, ValueError):
            conn.close()
            return
        if not isinstance(request, dict) or request.get("op") != "spawn":
            conn.close()
            return
        child = self.idle.pop(0) if self.idle else self.prefork()
        if child is None:
            conn.sendall(json.dumps({"ok": False, "error": "could not start a sandbox child"}).encode() + b"\n")
            conn.close()
            return
        try:
            socket.send_fds(conn, [json.dumps({"ok": True, "pid": child.pid}).encode() + b"\n"],
                            [child.channel.fileno(), child.stderr])
        except OSError:
            self._kill(child)
            conn.close()
            return
        finally:
            child.channel.close()
            os.close(child.stderr)
        conn.setblocking(False)
        self.leases[conn] = child
        self.selector.register(conn, selectors.EVENT_READ, "lease")

    def _lease_event(self, conn: socket.socket) -> None:
        # The judge's end of a lease: "usage" asks what the child has had of the CPUs (one line each, so asks that
        # arrive together are each answered), "interrupt" has its init end the test's process that timed out
        # (`testsignals.py`); anything else (EOF, "kill", garbage) ends the child.
        try:
            data = conn.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        asks = data.split(b"\n")
        if data.endswith(b"\n") and all(ask in (USAGE, INTERRUPT) for ask in asks[:-1]):
            for ask in asks[:-1]:
                if ask == USAGE:
                    self._answer_usage(conn)
                else:
                    self._kill(self.leases[conn], signal.SIGUSR1)  # not a kill: the judge's interrupt
            return
        child = self.leases.pop(conn)
        self.waits.pop(conn, None)
        self.selector.unregister(conn)
        self._kill(child)
        conn.close()

    def _answer_usage(self, conn: socket.socket) -> None:
        """The child's CPU seconds, its seconds waiting for a CPU (null where the kernel keeps none), whether it is
        running or runnable now, and which ask of this lease this answers."""
        # A child's filter refuses changing its nice and policy: only its session's autogroup is compared.
        waits = self.waits.setdefault(conn, cpuuse.Waits(cpuuse.Priority()))
        cpu, threads = cpuuse.tree(self.leases[conn].pid)
        waited, running = waits.look(threads)
        reply = {"cpu": cpu, "waited": waited, "running": running, "n": waits.looks}
        try:
            conn.sendall(json.dumps(reply).encode() + b"\n")
        except OSError:
            pass

    def _kill(self, child: Child, signum: int = signal.SIGKILL) -> None:
        try:
            os.kill(child.pid, signum)
        except ProcessLookupError:
            pass

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
            for conn, child in list(self.leases.items()):
                if child.waiter == pid:
                    try:
                        conn.setblocking(True)
                        conn.settimeout(1.0)
                        conn.sendall(json.dumps({"exit": code}).encode() + b"\n")
                    except OSError:
                        pass
                    self.leases.pop(conn)
                    self.waits.pop(conn, None)
                    self.selector.unregister(conn)
                    conn.close()
            for child in [c for c in self.idle if c.waiter == pid]:  # an idle child died (killed, say)
                self.idle.remove(child)
                child.channel.close()
                os.close(child.stderr)

    def shutdown(self) -> None:
        """Kill every child (leased or idle) and wait for them."""
        children = list(self.leases.values()) + self.idle
        for child in children:
            self._kill(child)
        # A stop signal can come while a child is in neither list: being confined (`prefork`), or handed over
        # and not yet a lease (`_accept`), which is right after every lease. Its waiter (a child of ours) goes
        # too, and its init with it: before, such a child kept the wait below going for its full 10 s.
        for pid in _own_children():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                time.sleep(0.01)
        print("sandbox zygote: children still running 10 s into its shutdown", file=sys.stderr, flush=True)


def _own_children() -> list[int]:
    """The pids of this process's children now (only at shutdown)."""
    found = []
    for task in os.listdir("/proc/self/task"):
        try:
            found += cpuuse.task_children(f"/proc/self/task/{task}")
        except OSError:
            continue  # that thread ended meanwhile
    return found


_instance: Zygote | None = None


def _stop(signum: int, _frame: object) -> None:
    """On a stop signal: end every child first, then go (a worker's shutdown must leave nothing behind)."""
    if _instance is not None:
        _instance.shutdown()
    os._exit(128 + signum)


def main(argv: list[str] | None = None) -> None:
    """Entry point: `zygote.py --socket PATH --config JSON`."""
    parser = argparse.ArgumentParser(prog="sandbox-zygote")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    config = jail.JailConfig.from_json(args.config)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _stop)
    # Descriptors passed with SCM_RIGHTS count as in flight for the sender's user until received, and a send
    # fails (ETOOMANYREFS) once that count is past the sender's own RLIMIT_NOFILE. Children a user namespace maps
    # to the zygote's user share its count: one that never receives what it sends itself can put its own limit's
    # worth in flight, plus a message (253) per thread sending at once. The zygote, which hands each judge its
    # child's descriptors that way, takes the highest limit it may have (its container has the engine's).
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    student_server.warm_up()
    seccomp_filter.prepare()  # each child only loads it
    forkready.settle()  # every child and every test's fork copies page tables of this process: keep them small
    forkready.check_cuda_in_a_fork()
    if os.path.exists(args.socket):
        os.unlink(args.socket)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(args.socket)
    os.chmod(args.socket, 0o666)  # noqa: S103 (its folder is private to the owner)
    listener.listen(16)
    global _instance
    _instance = Zygote(config, listener)
    _instance.serve()


if __name__ == "__main__":
    main()
