"""The isolation suites' probe: a student module of small functions that report what they can do inside a
sandbox, and what the tests look at from the worker's side (its /proc, its Python folders)."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from worker.engine.runners.local import namespace_mode

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "reference_tests" / "autograd" / "reference" / "solution.py"
HIDDEN_TESTS = REPO / "reference_tests" / "autograd" / "test_simple_gradients.py"
MB = 1024 * 1024
WORKER_TMP = Path("/tmp")  # noqa: S108  (the worker's own /tmp, on purpose: the sandbox must not see it)
SANDBOX_TMP = "/tmp"  # noqa: S108  (the sandbox's private /tmp, as the probe sees it)

needs_namespaces = pytest.mark.skipif(namespace_mode() == "none",
                                      reason="this kernel gives the local runner no namespaces to test")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the uid drop and RLIMIT_NPROC apply only as root")

# The student's solution.py in every sandbox of the isolation suites: small functions that report what they can do.
# A student function that leaves a daemon: double fork + setsid; the grandchild renames itself `tag` and sleeps
# forever. Self-contained, so that any probe or solution text can end with it.
DAEMON = textwrap.dedent('''
    def daemon(tag):
        import ctypes, os, time
        reader, writer = os.pipe()
        middle = os.fork()
        if middle == 0:
            os.setsid()
            if os.fork() == 0:
                ctypes.CDLL(None).prctl(15, tag.encode(), 0, 0, 0)  # PR_SET_NAME
                os.write(writer, str(os.getpid()).encode())
                os.closerange(3, 1024)
                while True:
                    time.sleep(3600)
            os._exit(0)
        pid = int(os.read(reader, 32))
        os.waitpid(middle, 0)
        os.close(reader)
        os.close(writer)
        return pid
''')

PROBE = textwrap.dedent('''
    import ctypes
    import errno
    import fcntl
    import json
    import os
    import socket
    import struct
    import sys
    import time


    def identity():
        status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines()
                      if ":\\t" in line)
        keep = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")
        return {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups(),
                **{k: status.get(k, "").strip() for k in keep}}


    def hostname():
        return os.uname().nodename


    def cgroups():
        return open("/proc/self/cgroup").read()


    def run(argv):
        import subprocess
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        return {"rc": done.returncode, "out": done.stdout[-500:], "err": done.stderr[-500:]}


    def network(port, unix_paths):
        result = {"interfaces": [name for _, name in socket.if_nameindex()], "reached": [], "errors": {}}
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            request = struct.pack("16sH", b"lo", 0)
            result["lo_flags"] = struct.unpack("16sH", fcntl.ioctl(s.fileno(), 0x8913, request))[1]  # SIOCGIFFLAGS
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            try:
                with socket.socket(family, socket.SOCK_STREAM) as s:
                    s.settimeout(2)
                    s.connect((host, port))
                    result["reached"].append(host)
            except OSError as exc:
                result["errors"][host] = exc.errno
        for path in unix_paths:
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(path)
                    result["reached"].append(path)
            except OSError as exc:
                result["errors"][path] = exc.errno
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(b"x", ("127.0.0.1", port))
                result["reached"].append("udp")
        except OSError as exc:
            result["errors"]["udp"] = exc.errno
        return result


    def processes(host_pid):
        seen = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    seen[name] = open(f"/proc/{name}/cmdline", "rb").read().replace(b"\\0", b" ").decode()
                except OSError:
                    pass
        try:
            os.kill(host_pid, 0)
            signal_host = "delivered"
        except ProcessLookupError:
            signal_host = "no such process"
        except PermissionError:
            signal_host = "permission denied"
        return {"pids": seen, "me": os.getpid(), "signal_host": signal_host}


    def paths(candidates):
        found = {}
        for path in candidates:
            entry = {"exists": os.path.lexists(path)}
            try:
                with open(path, "rb") as handle:
                    entry["read"] = handle.read(64).decode("utf-8", "replace")
            except OSError as exc:
                entry["error"] = exc.errno
            try:
                entry["listdir"] = sorted(os.listdir(path))[:50]
            except OSError:
                pass
            found[path] = entry
        return found


    def environment():
        return dict(os.environ)


    def write_files(folder, size, count):
        """Write `count` files of `size` bytes into `folder`; stop at the first error."""
        written = 0
        for i in range(count):
            path = os.path.join(folder, f"fill-{i}")
            try:
                with open(path, "wb") as handle:
                    left = size
                    while left:
                        chunk = min(left, 1 << 20)
                        handle.write(b"\\1" * chunk)
                        left -= chunk
                written += 1
            except OSError as exc:
                return {"written": written, "errno": exc.errno}
        return {"written": written, "errno": None}


    def remove_files(folder):
        for name in os.listdir(folder):
            if name.startswith("fill-"):
                os.unlink(os.path.join(folder, name))


    def rlimits():
        import resource
        names = ("RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_AS", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_NPROC",
                 "RLIMIT_CORE")
        return {**{n: list(resource.getrlimit(getattr(resource, n))) for n in names},
                "cpu_used": time.process_time()}


    def raise_limits():
        import resource
        failures = {}
        for name in ("RLIMIT_NPROC", "RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_CPU"):
            which = getattr(resource, name)
            soft, hard = resource.getrlimit(which)
            try:
                resource.setrlimit(which, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
                failures[name] = "raised"
            except (ValueError, OSError) as exc:
                failures[name] = type(exc).__name__
        return failures


    CHILDREN = []


    def fork_children(limit):
        """Fork sleeping children until fork() fails or `limit` are running; how many, and why it stopped."""
        while len(CHILDREN) < limit:
            try:
                pid = os.fork()
            except OSError as exc:
                return {"children": len(CHILDREN), "errno": exc.errno}
            if pid == 0:
                try:
                    while True:
                        time.sleep(3600)
                finally:
                    os._exit(0)
            CHILDREN.append(pid)
        return {"children": len(CHILDREN), "errno": None}


    def threads():
        return int(open("/proc/self/status").read().split("Threads:")[1].split()[0])


    HANDLES = []


    def open_files():
        already = len(os.listdir("/proc/self/fd")) - 1  # not counting listdir's own descriptor
        try:
            while True:
                HANDLES.append(open("/dev/null", "rb"))
        except OSError as exc:
            count = already + len(HANDLES)
            for handle in HANDLES:
                handle.close()
            HANDLES.clear()
            return {"open": count, "errno": exc.errno}


    def file_of_size(size):
        try:
            with open("sized", "wb") as handle:
                handle.write(b"\\0" * size)
            return "ok"
        except OSError as exc:
            return errno.errorcode[exc.errno]
        finally:
            try:
                os.unlink("sized")
            except OSError:
                pass


    def vm_data():
        return int(open("/proc/self/status").read().split("VmData:")[1].split()[0]) * 1024


    def allocate(size):
        try:
            block = bytearray(size)
            block[-1] = 1
            del block
            return "ok"
        except MemoryError:
            return "MemoryError"


    def cpu_time():
        return time.process_time()


    def burn(seconds):
        end = time.process_time() + seconds
        while time.process_time() < end:
            pass
        return "survived"


    def links(targets):
        made = []
        for name, target in targets.items():
            os.symlink(target, name)
            made.append(name)
        for name in targets:
            try:
                with open(os.path.join(name, "written-through-link"), "w") as handle:
                    handle.write("x")
                made.append("wrote through " + name)
            except OSError:
                pass
        return made


    def tamper(candidates):
        result = {}
        for path in candidates:
            try:
                with open(path, "a") as handle:
                    handle.write("# tampered")
                result[path] = "written"
            except OSError as exc:
                result[path] = errno.errorcode[exc.errno]
        try:
            os.mkdir("/evil")
            result["/evil"] = "created"
        except OSError as exc:
            result["/evil"] = errno.errorcode[exc.errno]
        return result


    def stall():
        """Reply "ok" on the protocol stream by hand, then stop serving (and stop reading requests)."""
        frame = sys._getframe()  # the server is the `self` of a frame up the stack (gc cannot see a frozen heap)
        while type(frame.f_locals.get("self")).__name__ != "Server":
            frame = frame.f_back
        server = frame.f_locals["self"]
        body = json.dumps({"ok": True, "value": "forged", "writeback": [], "output": ""}).encode()
        server.proto_out.write(struct.pack(">I", len(body)) + body)
        server.proto_out.flush()
        while True:
            time.sleep(3600)
''') + DAEMON



def python_dirs() -> list[Path]:
    return [Path(os.path.realpath(p)) for p in (sys.prefix, sys.base_prefix)]


def only_leads_to_python(path: str, entry: dict[str, Any]) -> bool:
    """True for a folder that the sandbox has only because a Python installation is mounted below it."""
    here = Path(path)
    below = {d.relative_to(here).parts[0] for d in python_dirs() if here in d.parents}
    return bool(below) and set(entry.get("listdir", [])) <= below


def host_tasks(uid: int) -> list[tuple[int, str]]:
    """(pid, comm) of every task on the worker that runs as `uid` (threads count for RLIMIT_NPROC)."""
    tasks = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for task in (proc / "task").iterdir():
                status = (task / "status").read_text()
                if int(status.split("Uid:")[1].split()[0]) == uid:
                    tasks.append((int(task.name), status.split("Name:")[1].split()[0]))
        except (OSError, IndexError, ValueError):
            continue
    return tasks

