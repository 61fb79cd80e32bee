"""Confine a freshly forked sandbox child before it sees one byte of student code. Runs inside the sandbox.

`enter()` is called by the sandbox zygote's forked child. It puts the child into new user (where that is the
means), pid, mount, network, IPC and UTS namespaces, becomes pid 1 there through a second fork, builds a private
read-only root with fresh size-capped tmpfs for /work, /tmp and /dev/shm, a fresh /proc masked like Docker's and
a minimal /dev, then sets rlimits, oom_score_adj, a uid of its own, drops every capability (bounding and ambient
too), sets no_new_privs and loads a seccomp allowlist no wider than Docker's default. Standard library only.
(The zygote then reseeds the child's random generators: `globalstate.reseed`.)
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import resource
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

import seccomp_filter  # beside this file, inside the sandbox
from globalstate import KEEP_CPU_SECONDS

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.syscall.restype = ctypes.c_long

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
NAMESPACES = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNET
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_SECCOMP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 1, 24, 22, 38, 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECCOMP_MODE_FILTER = 2
INNER_UID = 1000  # who the child is inside its own user namespace: not root, so exec can never regain caps
# Where the private root is assembled before pivot_root: any existing directory serves, /tmp is avoided
# because the Python environment itself may live under it (a CI checkout).
ROOT_MOUNTPOINTS = ("/mnt", "/media", "/srv", "/opt")
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/etc")
DEVICES = ("null", "zero", "full", "random", "urandom")
# The /proc entries Docker masks (made empty) and makes read-only, in every child as in a container.
PROC_MASKED = ("acpi", "asound", "interrupts", "kcore", "keys", "latency_stats", "timer_list", "timer_stats",
               "sched_debug", "scsi", "sysrq-trigger")
PROC_READ_ONLY = ("bus", "fs", "irq", "sys")
_ST_TO_MS = ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
             (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME), (os.ST_RELATIME, MS_RELATIME))


class JailError(OSError):
    """A confinement step failed: the child must not go on to serve."""


@dataclass(frozen=True)
class JailConfig:
    """What a child's confinement needs; built by the zygote from its command line."""

    expose: tuple[str, ...]          # host directories visible read-only at the same path (beyond SYSTEM_DIRS)
    # None: a user namespace stands in (the zygote is not root); else each child draws a uid of its own from
    # [start, stop) and switches to it (the zygote runs as root)
    uid_range: tuple[int, int] | None = None
    memory_mb: int = 1024
    cpu_seconds: float = 10.0
    pids: int = 64
    tmpfs_mb: int = 64
    file_size_mb: int = 32
    open_files: int = 256
    gpu: bool = False
    idle: int = 1  # children the zygote keeps confined ahead: one per slot it serves

    @classmethod
    def from_json(cls, text: str) -> JailConfig:
        """Parse the zygote's --config argument."""
        data = json.loads(text)
        data["expose"] = tuple(data.get("expose", ()))
        if data.get("uid_range") is not None:
            data["uid_range"] = tuple(data["uid_range"])
        return cls(**data)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise JailError(errno, f"{what}: {os.strerror(errno)}")


def _enc(text: str | None) -> bytes | None:
    return text.encode() if text is not None else None


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(_enc(source), _enc(target), _enc(fstype), flags, _enc(data)), f"mount {target}")


def _prctl(option: int, arg: int = 0) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)),
           f"prctl {option}")


def die_with_parent() -> None:
    """SIGKILL this process when its parent dies (set again after any change of uid, which clears it)."""
    _prctl(PR_SET_PDEATHSIG, 9)
    if os.getppid() == 1:  # the parent died before the line above took effect
        os._exit(1)


# -- step 1: namespaces ---------------------------------------------------------------------------------------
def unshare(user: bool) -> None:
    """New namespaces for this process (mount, UTS, IPC, network) and for its next child (pid)."""
    outer_uid, outer_gid = os.geteuid(), os.getegid()
    _check(_libc.unshare(NAMESPACES | (CLONE_NEWUSER if user else 0)), "unshare")
    if user:
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"{INNER_UID} {outer_uid} 1")
        Path("/proc/self/gid_map").write_text(f"{INNER_UID} {outer_gid} 1")


# -- step 2: the private root ---------------------------------------------------------------------------------
def _remount_read_only(path: str) -> None:
    # Flags the mount already carries are locked in a user namespace: a remount must repeat them.
    flags = os.statvfs(path).f_flag
    keep = sum(ms for st, ms in _ST_TO_MS if flags & st)
    _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | keep)


def _expose(root: str, path: str) -> None:
    if os.path.islink(path):
        os.makedirs(root + os.path.dirname(path), exist_ok=True)
        if not os.path.lexists(root + path):
            os.symlink(os.readlink(path), root + path)
        return
    if not os.path.isdir(path) or (os.path.isdir(root + path) and os.path.ismount(root + path)):
        return
    os.makedirs(root + path, exist_ok=True)
    _mount(path, root + path, None, MS_BIND | MS_REC)
    _remount_read_only(root + path)


def _bind_file(source: str, target: str) -> None:
    if not os.path.exists(target):
        Path(target).touch()
    _mount(source, target, None, MS_BIND)


def build_root(config: JailConfig, sandbox_uid: int) -> None:
    """Assemble the child's root and pivot into it; the old root (and the zygote's socket) is gone after."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    root = next(p for p in ROOT_MOUNTPOINTS if os.path.isdir(p))
    _mount("grader-root", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=0755")
    for sub in ("work", "tmp", "proc", "dev", "dev/shm"):
        os.makedirs(f"{root}/{sub}", exist_ok=True)
    capped = f"size={config.tmpfs_mb}m"
    owner = f"uid={sandbox_uid},gid={sandbox_uid}"
    secure = MS_NOSUID | MS_NODEV | MS_NOEXEC
    # The tmpfs first: the Python environment may live under /work or /tmp (a checkout), and is exposed on top.
    _mount("grader-work", f"{root}/work", "tmpfs", secure, f"{capped},mode=0700,{owner}")
    _mount("grader-tmp", f"{root}/tmp", "tmpfs", secure, f"{capped},mode=1777")  # noqa: S108 (the child's)
    _mount("grader-shm", f"{root}/dev/shm", "tmpfs", secure, f"{capped},mode=1777")  # noqa: S108
    for path in dict.fromkeys((*SYSTEM_DIRS, *config.expose)):
        _expose(root, path)
    for name in DEVICES:
        _bind_file(f"/dev/{name}", f"{root}/dev/{name}")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{root}/dev/{name}")
    if config.gpu:
        _expose(root, "/sys")
        for node in sorted(Path("/dev").glob("nvidia*")):
            if node.is_dir():
                _expose(root, str(node))
            elif stat.S_ISCHR(node.stat().st_mode):
                _bind_file(str(node), f"{root}{node}")
    _mount("proc", f"{root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for name in PROC_MASKED:
        target = f"{root}/proc/{name}"
        if os.path.isdir(target):
            _mount("grader-masked", target, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k")
        elif os.path.exists(target):
            _mount(f"{root}/dev/null", target, None, MS_BIND)
    for name in PROC_READ_ONLY:
        target = f"{root}/proc/{name}"
        if os.path.exists(target):
            _mount(target, target, None, MS_BIND | MS_REC)
            _remount_read_only(target)
    os.chdir(root)
    _check(_libc.syscall(_pivot_root_nr(), b".", b"."), "pivot_root")
    _check(_libc.umount2(b".", MNT_DETACH), "umount old root")
    os.chdir("/")
    _mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chdir("/work")


def _pivot_root_nr() -> int:
    return {"x86_64": 155, "aarch64": 41}[platform.machine()]


# -- step 3: limits and identity ------------------------------------------------------------------------------
def set_limits(config: JailConfig) -> None:
    """rlimits the child can only lower: CPU time (each process counts its own), data, files, processes."""
    mb = 1024 * 1024
    cpu = max(1, round(config.cpu_seconds))
    # The hard limit leaves room for a test's process that serves the next test too (`globalstate`): each test
    # process moves its soft limit to what it has used + `cpu`, which must stay below the hard one.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1 + KEEP_CPU_SECONDS))
    data = (config.memory_mb + (8192 if config.gpu else 0)) * mb
    resource.setrlimit(resource.RLIMIT_DATA, (data, data))
    resource.setrlimit(resource.RLIMIT_FSIZE, (config.file_size_mb * mb, config.file_size_mb * mb))
    resource.setrlimit(resource.RLIMIT_NOFILE, (config.open_files, config.open_files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # Counted per user namespace (and per uid): the child's own processes, not the zygote's.
    resource.setrlimit(resource.RLIMIT_NPROC, (config.pids, config.pids))
    # Under memory pressure the kernel's OOM killer takes a child, never the zygote.
    Path("/proc/self/oom_score_adj").write_text("1000")


def drop_privileges(uid: int | None) -> None:
    """Empty bounding, ambient, effective, permitted and inheritable sets; a uid of its own; no_new_privs."""
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for cap in range(last + 1):
        _prctl(PR_CAPBSET_DROP, cap)
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()
    _check(_libc.capset(header, data), "capset")
    no_new_privs()


def no_new_privs() -> None:
    """Nothing this process or its children exec can gain privileges again (and a seccomp filter may load)."""
    _prctl(PR_SET_NO_NEW_PRIVS, 1)


def close_fds(keep: tuple[int, ...]) -> None:
    """Close every inherited descriptor but 0-2 and `keep`."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def confine(config: JailConfig) -> None:
    """In the namespaces' init (pid 1): everything after the namespaces, in the order that keeps it possible."""
    uid = None if config.uid_range is None else config.uid_range[0] + secrets.randbelow(
        config.uid_range[1] - config.uid_range[0])
    instructions = seccomp_filter.program()  # read before the root changes
    build_root(config, INNER_UID if uid is None else uid)
    _check(_libc.sethostname(b"sandbox", 7), "sethostname")
    set_limits(config)
    drop_privileges(uid)
    _prctl(PR_SET_PDEATHSIG, 9)  # the uid change cleared it: die with the waiter, as before
    seccomp_filter.install(instructions)
