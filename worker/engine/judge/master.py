"""The judge master: one per worker, it imports torch and pytest once and forks each slot's judge zygote.

Without it, a worker with N slots starts N judge zygotes, each a new Python that imports torch and pytest (some
100 MB of its own), and each owns a sandbox zygote container (~280 MB). The master holds those imports once: a
pool process's warm judge (`launch.WarmJudge`) connects to its socket and gets a judge zygote forked from it,
whose control protocol (`worker.engine.judge.zygote`) runs over that connection. The sandbox zygotes belong to
the master's keeper, a child forked from the warm master (so it holds little of its own): per kind of sandbox,
a zygote container per slot (a local zygote process serves all N: `worker.engine.judge.sandboxes`), whose socket
a judge zygote asks the keeper for, job by job. So a worker holds one copy of the judge's torch whatever its
number of slots; each submission still gets a judge process and a sandbox that no other submission touched.

Lifetimes: the master dies with the worker process that started it (PR_SET_PDEATHSIG, and the end of its
stdin), the keeper and every judge zygote with the master (PR_SET_PDEATHSIG), a judge zygote also when its pool
process closes the connection. The keeper stops its zygotes on the way out; a zygote container whose keeper was
SIGKILLed removes itself when its attach lifeline closes. A master restarts a keeper that died.

Requests, one JSON line per connection, both sockets in a folder only the worker's user can enter:
`{"op": "judge"}` on the master's (the connection then is a judge zygote's: `{"ready": pid}` comes back, then
jobs go in), `{"op": "sandbox", "job": {...}, "holder": pid}` on the keeper's (answered `{"socket": path}`, or
`{"socket": null}` when no zygote could be started: the job's runner then starts one of its own).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import selectors
import signal
import socket
import sys
import time
import traceback
from typing import Any

from worker.engine.judge.sandboxes import sandbox_request

MASTER_SOCKET = "judge.sock"
KEEPER_SOCKET = "sandbox.sock"
REQUEST_LIMIT = 1 << 20  # a sandbox request is a few hundred bytes
# The keeper may start a zygote container and wait for it to import torch (`forked.READY_TIMEOUT`, 120 s).
KEEPER_TIMEOUT = 180.0
PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """SIGTERM from the kernel when the parent goes; exit now if it went already (between fork and here)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(0)


def read_line(conn: socket.socket, limit: int) -> bytes:
    """The master's one request line, byte by byte up to its newline: what follows it on the connection is the
    judge zygote's to read, not ours to take."""
    data = bytearray()
    while len(data) <= limit:
        byte = conn.recv(1)
        if not byte or byte == b"\n":
            return bytes(data)
        data += byte
    raise ValueError(f"a request line over {limit} bytes")


class KeeperClient:
    """A judge zygote's sandbox source when the master's keeper owns the sandbox zygotes."""

    def __init__(self, path: str) -> None:
        self.path = path

    def socket_for(self, job: dict[str, Any]) -> str | None:
        """The socket of the keeper's zygote for `job`'s kind of sandbox; None when it has none to give."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(KEEPER_TIMEOUT)
                conn.connect(self.path)
                # Only what decides the kind of sandbox: the submission's files stay out of the keeper.
                # This judge zygote's pid: the keeper gives each slot's judge zygote a Docker zygote of its own.
                request = {"op": "sandbox", "job": sandbox_request(job), "holder": os.getpid()}
                conn.sendall((json.dumps(request) + "\n").encode())
                with conn.makefile("rb") as replies:
                    reply = json.loads(replies.readline(65536) or b"null")
        except (OSError, ValueError) as exc:
            print(f"judge zygote: no sandbox zygote from the keeper: {exc}", file=sys.stderr)
            return None
        path = reply.get("socket") if isinstance(reply, dict) else None
        return path if isinstance(path, str) else None

    def stop(self) -> None:
        """Nothing: the keeper's zygotes serve the other slots, and outlive this judge zygote."""


def _listen(path: str) -> socket.socket:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)  # in the starter's private folder: no one else can connect
    listener.listen(64)
    return listener


def _keeper_main(listener: socket.socket, slots: int, master: int) -> None:
    """The keeper: answer each request with a zygote's socket, stop every zygote when told to go."""
    die_with_parent(master)
    os.dup2(2, 1)  # standard output is the pipe the master reported on: its reader may be gone
    from worker.engine.judge.sandboxes import SandboxZygotes

    zygotes = SandboxZygotes(slots)

    def stop(signum: int, _frame: object) -> None:
        zygotes.stop()
        os._exit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    while True:
        conn, _ = listener.accept()
        with conn:
            try:
                conn.settimeout(30)
                with conn.makefile("rb") as requests:  # one request per connection: buffered reads are safe
                    line = requests.readline(REQUEST_LIMIT + 1)
                if len(line) > REQUEST_LIMIT:
                    raise ValueError(f"a request line over {REQUEST_LIMIT} bytes")
                request = json.loads(line)
                job = request.get("job") if isinstance(request, dict) else None
                holder = request.get("holder") if isinstance(request, dict) else None
                holder = holder if isinstance(holder, int) and not isinstance(holder, bool) else None
                path = zygotes.socket_for(job, holder) if isinstance(job, dict) else None
                conn.sendall((json.dumps({"socket": path}) + "\n").encode())
            except (OSError, ValueError) as exc:
                print(f"judge master's keeper: a request failed: {exc}", file=sys.stderr)


class Master:
    """The warm master: forks a judge zygote per connection, keeps a keeper, reaps both."""

    def __init__(self, socket_dir: str, slots: int) -> None:
        self.slots = slots
        self.listener = _listen(os.path.join(socket_dir, MASTER_SOCKET))
        self.keeper_path = os.path.join(socket_dir, KEEPER_SOCKET)
        self.keeper_listener = _listen(self.keeper_path)
        self.keeper = 0  # forked once warm (`serve`): it then shares the master's imports, docker-py's too
        self.judges: set[int] = set()
        self.wake_r, self.wake_w = -1, -1

    def _fork_keeper(self) -> int:
        me = os.getpid()
        pid = os.fork()
        if pid == 0:
            try:
                self.listener.close()
                _keeper_main(self.keeper_listener, self.slots, me)
            finally:
                os._exit(0)
        return pid

    def serve(self) -> None:
        """Fork judge zygotes until the lifeline (stdin) closes or a stop signal comes; then stop everything."""
        self.keeper = self._fork_keeper()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._stop)
        selector = selectors.DefaultSelector()
        selector.register(self.listener, selectors.EVENT_READ, "accept")
        selector.register(self.wake_r, selectors.EVENT_READ, "signal")
        selector.register(0, selectors.EVENT_READ, "lifeline")
        while True:
            for key, _ in selector.select(timeout=5.0):
                if key.data == "accept":
                    self._accept()
                elif key.data == "lifeline" and not os.read(0, 4096):
                    self.shutdown()
                    return
                elif key.data == "signal":
                    os.read(self.wake_r, 4096)
            self._reap()

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        try:
            conn.settimeout(10)
            request = json.loads(read_line(conn, 4096))
            if not isinstance(request, dict) or request.get("op") != "judge":
                raise ValueError(f"not a request for a judge zygote: {request!r}")
            conn.settimeout(None)
        except (OSError, ValueError) as exc:
            print(f"judge master: a request failed: {exc}", file=sys.stderr)
            conn.close()
            return
        me = os.getpid()
        pid = os.fork()
        if pid == 0:
            try:
                self._judge_zygote(conn, me)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(0)
        conn.close()
        self.judges.add(pid)

    def _judge_zygote(self, conn: socket.socket, master: int) -> None:
        """In the forked judge zygote: nothing of the master's but the warm state; serve the connection."""
        die_with_parent(master)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in (self.wake_r, self.wake_w):
            os.close(fd)
        self.listener.close()
        self.keeper_listener.close()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)  # the master's lifeline is not this process's
        os.close(null)
        from worker.engine.judge.zygote import serve

        jobs = conn.makefile("r", encoding="utf-8")
        control = conn.makefile("w", encoding="utf-8")
        control.reconfigure(line_buffering=True)  # makefile() has no line buffering of its own
        serve(jobs, control, KeeperClient(self.keeper_path), jobs, conn)

    def _reap(self) -> None:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.judges.discard(pid)
            if pid == self.keeper:
                print("judge master: the keeper died; starting another", file=sys.stderr)
                self.keeper = self._fork_keeper()

    def _stop(self, signum: int, _frame: object) -> None:
        self.shutdown()
        os._exit(128 + signum)

    def shutdown(self) -> None:
        """Stop the judge zygotes and the keeper (which stops the sandbox zygotes), and wait for them."""
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        children = [pid for pid in (*self.judges, self.keeper) if pid > 0]  # (kill(0) would be our group)
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 30
        for pid in children:
            while time.monotonic() < deadline:
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if done:
                    break
                time.sleep(0.05)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def master_main(argv: list[str]) -> None:
    """`python -m worker.engine.judge --master DIR --slots N`: listen, report, warm up, serve."""
    parser = argparse.ArgumentParser(prog="judge-master")
    parser.add_argument("--master", required=True, help="the private folder for the sockets")
    parser.add_argument("--slots", type=int, default=1)
    args = parser.parse_args(argv)
    die_with_parent(os.getppid())
    # Listening before the imports: connections wait in the backlog meanwhile.
    master = Master(args.master, max(1, args.slots))
    print(json.dumps({"listening": os.getpid()}), flush=True)
    from worker.engine.judge.zygote import warm_up

    warm_up()
    master.serve()
