"""Did a test leave the process's global state changed? A fingerprint of what one test's code could change for
the tests after it: torch's modes and defaults, the attributes of torch's (and Python's) main namespaces, signal
handlers, timers, threads and child processes. Runs inside the sandbox; standard library (and torch) only.
And the one state no fork may inherit as it is: its random generators (`reseed`).

A test's process may serve the next test of its deliverable (`testprocs`) only while its fingerprint still
equals the one it started with. The check runs in the student's own process, so a submission can defeat it;
that only costs the submission itself (its own later tests see what it changed): the judge never lets a
process serve a test of another deliverable or isolation group, let alone another submission. False alarms
are harmless (the next test gets a fresh process, as every test once did), so anything unsure counts as
changed.
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import sys
import threading
from types import ModuleType
from typing import Any

# Namespaces whose attributes a test could replace for the tests after it (monkeypatching): module, class or
# settings object, by dotted path from an imported module. Missing ones are skipped.
NAMESPACES = (
    "builtins", "math", "random", "os", "numpy", "numpy.random", "numpy.linalg",
    "torch", "torch.Tensor", "torch._C.TensorBase", "torch.nn", "torch.nn.Module", "torch.nn.Linear",
    "torch.nn.Parameter", "torch.nn.functional", "torch.nn.init", "torch.autograd", "torch.autograd.Function",
    "torch.autograd.functional", "torch.autograd.grad_mode", "torch.optim", "torch.optim.Optimizer",
    "torch.optim.SGD", "torch.optim.Adam", "torch.linalg", "torch.func", "torch.testing", "torch.random",
    "torch._tensor_str.PRINT_OPTS",  # torch.set_printoptions(): how a later test's tensors print
)
SIGNALS = tuple(getattr(signal, name) for name in ("SIGXCPU", "SIGTERM", "SIGINT", "SIGALRM", "SIGPIPE", "SIGCHLD",
                                                   "SIGUSR1", "SIGUSR2", "SIGVTALRM", "SIGPROF", "SIGSEGV")
                if hasattr(signal, name))
# sys by attribute, not by its dict's version: the student server swaps sys.stdout and back around every call.
_SYS_NAMES = ("stdin", "stdout", "stderr", "displayhook", "excepthook", "meta_path", "path_hooks", "path",
              "modules", "settrace", "setprofile", "exit", "getrecursionlimit", "setrecursionlimit")
# Memory a test may leave allocated and still hand its process to the next test.
KEEP_GROWTH_BYTES = 64 * 1024 * 1024
# ... and to park it for a later test of its deliverable, while other tests run beside it (`testprocs`): at most
# MAX_PARKED at once, each holding its growth and the pages it copied from the post-import process (~5-10 MB).
# The zygote's container leaves room for them (`worker/engine/runners/child_cgroup.py`, SLOT_MEMORY_MB).
PARK_GROWTH_BYTES = 16 * 1024 * 1024
MAX_PARKED = 3
# CPU seconds a test's process may have used and still serve the next test with a full CPU limit of its own: the
# hard RLIMIT_CPU of every test process is the limit + 1 s of grace + this (soft limits move, hard ones cannot).
KEEP_CPU_SECONDS = 2


def fingerprint() -> tuple[Any, ...]:
    """Everything this module compares, as one value (equal fingerprints: nothing we watch has changed)."""
    return (_torch_modes(), _namespaces(), _sys_state(), _signals(), threading.active_count(), tasks())


def _resolve(path: str) -> Any:
    """The module or class at `path`, read without running a module's lazy `__getattr__` (None if absent)."""
    parts = path.split(".")
    target: Any = sys.modules.get(parts[0])
    for index, part in enumerate(parts[1:], start=2):
        if target is None:
            return None
        imported = sys.modules.get(".".join(parts[:index])) if isinstance(target, ModuleType) else None
        target = imported if imported is not None else vars(target).get(part)
    return target


def _namespaces() -> tuple[Any, ...]:
    """Per namespace: the object, and its attribute dict's version (a change to any attribute changes it)."""
    found = []
    for path in NAMESPACES:
        target = _resolve(path)
        if target is not None:
            found.append((path, id(target), _attributes(target)))
    return tuple(found)


def _attributes(target: Any) -> Any:
    """What stands for `target`'s attributes: its dict's version number where CPython keeps one (PEP 509),
    else each attribute's name and object identity.

    The version is read without touching a single attribute: in a forked process every object touched has its
    reference count written, and so its memory page copied. Reading the thousands of attributes of torch's
    namespaces that way cost a fresh test process some 1,600 page faults (~7 ms); the version costs none.
    """
    try:
        attributes = vars(target)
    except TypeError:
        return ("<no __dict__>",)
    if not isinstance(attributes, dict):  # a class's mappingproxy: the dict behind it
        inner = gc.get_referents(attributes)
        attributes = inner[0] if len(inner) == 1 and isinstance(inner[0], dict) else attributes
    if _VERSION_OFFSET is not None and type(attributes) is dict:
        return ctypes.c_uint64.from_address(id(attributes) + _VERSION_OFFSET).value
    # type(), not isinstance(): an object's __class__ may be a property that runs code (and takes time).
    return {name: id(value) for name, value in attributes.items() if not issubclass(type(value), ModuleType)}


def _version_offset() -> int | None:
    """Where CPython keeps a dict's version tag (after the object header and the item count), if this
    interpreter is one whose layout we know and a test of it passes; None otherwise."""
    if sys.implementation.name != "cpython" or not (3, 8) <= sys.version_info[:2] <= (3, 13) \
            or not getattr(sys, "_is_gil_enabled", lambda: True)():
        return None
    offset = 2 * ctypes.sizeof(ctypes.c_void_p) + ctypes.sizeof(ctypes.c_ssize_t)
    probe: dict[str, int] = {"a": 1}

    def read() -> int:
        return ctypes.c_uint64.from_address(id(probe) + offset).value

    used = ctypes.c_ssize_t.from_address(id(probe) + offset - ctypes.sizeof(ctypes.c_ssize_t)).value
    before = read()
    probe["a"] = 2
    after = read()
    probe["b"] = 3
    return offset if used == 1 and before != after != read() else None


_VERSION_OFFSET = _version_offset()


def _torch_modes() -> tuple[Any, ...]:
    torch = sys.modules.get("torch")
    if torch is None:
        return ()
    readers = (
        torch.is_grad_enabled, torch.is_inference_mode_enabled, torch.get_default_dtype,
        # The default device as torch.get_default_device() finds it: a device context on the function-mode
        # stack (its length, below) or the global one that set_default_device() leaves. Read directly: the
        # function itself imports and walks enough of torch to copy ~60 pages in a fresh fork.
        lambda: id(getattr(getattr(torch, "_GLOBAL_DEVICE_CONTEXT", None), "device_context", None)),
        torch.is_anomaly_enabled, torch.are_deterministic_algorithms_enabled, torch.get_num_threads,
        torch.get_float32_matmul_precision,
        lambda: torch._C._len_torch_function_stack(), lambda: torch._C._len_torch_dispatch_stack(),
        lambda: torch._C._is_torch_function_enabled(),
        lambda: torch._C._autograd._saved_tensors_hooks_is_enabled(),
    )
    values = []
    for read in readers:
        try:
            values.append(repr(read()))
        except Exception:
            values.append("<unreadable>")
    return tuple(values)


def _sys_state() -> tuple[Any, ...]:
    return (tuple(id(getattr(sys, name, None)) for name in _SYS_NAMES), tuple(sys.path), sys.getrecursionlimit(),
            sys.gettrace() is None, sys.getprofile() is None, tuple(id(m) for m in sys.meta_path),
            sys.getswitchinterval(), tuple(os.environ.items()), os.getcwd(), os.umask(os.umask(0o022)))


def _signals() -> tuple[Any, ...]:
    handlers = []
    for signum in SIGNALS:
        try:
            handlers.append(id(signal.getsignal(signum)))
        except (ValueError, OSError):
            handlers.append(None)
    timers = tuple(signal.getitimer(which) for which in (signal.ITIMER_REAL, signal.ITIMER_VIRTUAL,
                                                         signal.ITIMER_PROF))
    return tuple(handlers), timers, tuple(sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])))


def tasks() -> int:
    """The process's threads as the kernel counts them (native threads a test started included)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return -1


def has_children() -> bool:
    """Does this process have a child, running or not yet reaped?"""
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def resident_bytes() -> int:
    """This process's resident memory that is not backed by a file, from /proc (0 where it cannot be read):
    what a test can leave allocated. torch's code pages that a test faults in are not counted."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            fields = statm.read().split()
            return (int(fields[1]) - int(fields[2])) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def reseed() -> None:
    """A forked process must not repeat its siblings' random numbers."""
    import random

    random.seed(os.urandom(32))
    torch = sys.modules.get("torch")
    if torch is not None:
        seed = int.from_bytes(os.urandom(8), "little") & ((1 << 63) - 1)
        # Not torch.manual_seed: it queues a lazy seed for every accelerator backend, each with a formatted
        # stack (milliseconds a fork, and a fork per test). The CPU generator, and CUDA's where torch has it
        # (queued until the child initialises CUDA, which the zygote never does).
        torch.default_generator.manual_seed(seed)
        if torch.version.cuda is not None:
            torch.cuda.manual_seed_all(seed)
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed(int.from_bytes(os.urandom(4), "little"))
