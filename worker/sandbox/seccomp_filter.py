"""The sandbox child's seccomp filter: Docker's default allowlist, a little stricter, as classic BPF.

`seccomp_table.json` (made by scripts/gen-seccomp-table from Docker's default profile) lists the syscalls
Docker allows a container without capabilities, by number for each architecture. On top of that the filter
refuses ptrace and process_vm_readv/writev (Docker allows them), the calls that change a thread's scheduling
priority or policy (a thread that lowered its own priority would be kept waiting for a CPU on a busy machine,
and waiting earns a test past its limit more time: `worker/engine/judge/overtime.py`), clone with any namespace
flag, clone3 (ENOSYS, so the C library falls back to clone, whose flags a filter can see), AF_VSOCK sockets and
personality changes other than the harmless ones. Everything else fails with EPERM; a syscall of another
architecture kills. Standard library only: it runs inside the sandbox.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import json
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TABLE = Path(__file__).with_name("seccomp_table.json")
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
RET_KILL_PROCESS, RET_ALLOW = 0x80000000, 0x7FFF0000
LD_ABS_W, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06
NR, ARCH, ARG0 = 0, 4, 16  # offsets in struct seccomp_data (arg 0's low word, little-endian)
X32_BIT = 0x40000000
NAMESPACE_FLAGS = 0x7E020000  # CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
AF_VSOCK = 40
PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)  # as Docker's default: query, and Linux variants
# Allowed by Docker's default profile, refused here (and in the fresh containers' profile: `docker_config`).
REFUSED = ("ptrace", "process_vm_readv", "process_vm_writev", "setpriority", "sched_setscheduler", "sched_setattr")


class _Instruction(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Instruction))]


def _errno(code: int) -> int:
    return 0x00050000 | code


@functools.lru_cache(maxsize=4)
def program(arch: str | None = None) -> tuple[tuple[int, int, int, int], ...]:
    """The filter as (code, jt, jf, k) instructions for `arch` (this machine's by default); made once per
    process (a zygote makes it before it forks: `prepare`)."""
    arch = arch or platform.machine()
    entry = json.loads(TABLE.read_text())[arch]
    numbers = entry["numbers"]
    allowed = sorted({nr for name, nr in entry["allow"].items() if name not in REFUSED})
    eperm = _errno(errno.EPERM)
    prog: list[tuple[int, int, int, int]] = [
        (LD_ABS_W, 0, 0, ARCH),
        (JEQ, 1, 0, AUDIT_ARCH[arch]),
        (RET, 0, 0, RET_KILL_PROCESS),
        (LD_ABS_W, 0, 0, NR),
    ]
    if arch == "x86_64":
        prog += [(JGE, 0, 1, X32_BIT), (RET, 0, 0, eperm)]

    def special(nr: int, block: list[tuple[int, int, int, int]]) -> None:
        # jeq nr: fall into the block; otherwise jump over it to the next check.
        prog.append((JEQ, 0, len(block), nr))
        prog.extend(block)

    special(numbers["clone3"], [(RET, 0, 0, _errno(errno.ENOSYS))])
    special(numbers["clone"], [(LD_ABS_W, 0, 0, ARG0), (JSET, 0, 1, NAMESPACE_FLAGS), (RET, 0, 0, eperm),
                               (RET, 0, 0, RET_ALLOW)])
    special(numbers["socket"], [(LD_ABS_W, 0, 0, ARG0), (JEQ, 0, 1, AF_VSOCK), (RET, 0, 0, eperm),
                                (RET, 0, 0, RET_ALLOW)])
    persona = [(LD_ABS_W, 0, 0, ARG0)]
    for index, value in enumerate(PERSONALITIES):
        persona.append((JEQ, len(PERSONALITIES) - index, 0, value))
    persona += [(RET, 0, 0, eperm), (RET, 0, 0, RET_ALLOW)]
    special(numbers["personality"], persona)
    for nr in allowed:
        prog += [(JEQ, 0, 1, nr), (RET, 0, 0, RET_ALLOW)]
    prog.append((RET, 0, 0, eperm))
    return tuple(prog)


@functools.lru_cache(maxsize=4)
def _compiled(instructions: tuple[tuple[int, int, int, int], ...]) -> tuple[Any, Any]:
    """The kernel's struct sock_fprog for `instructions`, and the array it points to (kept alive with it)."""
    array = (_Instruction * len(instructions))(*[_Instruction(*i) for i in instructions])
    return _Program(len(instructions), array), array


def prepare() -> None:
    """Make this machine's filter now (a zygote, before it forks: each child then only loads it)."""
    _compiled(program())


def install(instructions: Sequence[tuple[int, int, int, int]] | None = None) -> None:
    """Load the filter into this process (no_new_privs must already be set); irreversible."""
    prog, _array = _compiled(tuple(instructions) if instructions else program())
    libc = ctypes.CDLL(None, use_errno=True)
    # prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)
    if libc.prctl(22, ctypes.c_ulong(2), ctypes.byref(prog), ctypes.c_ulong(0), ctypes.c_ulong(0)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"seccomp: {__import__('os').strerror(code)}")
