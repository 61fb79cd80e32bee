"""Did a test leave the process's global state changed? A fingerprint of what one test's code could change for
the tests after it: torch's modes and defaults, the attributes of torch's (and Python's) main namespaces, signal
handlers, timers, threads and child processes. Runs inside the sandbox; standard library (and torch) only.

A test's process may serve the next test of its deliverable (`testprocs`) only while its fingerprint still
equals the one it started with. The check runs in the student's own process, so a submission can defeat it;
that only costs the submission itself (its own later tests see what it changed): whatever it leaves never
reaches another isolation group, let alone another submission. False alarms are harmless (the next test gets a
fresh process, as every test once did), so anything unsure counts as changed.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import ModuleType
from typing import Any

# Namespaces whose attributes a test could replace for the tests after it (monkeypatching): module or class,
# by dotted path from an imported module. Missing ones are skipped.
NAMESPACES = (
    "builtins", "math", "random", "sys", "os", "numpy", "numpy.random", "numpy.linalg",
    "torch", "torch.Tensor", "torch._C.TensorBase", "torch.nn", "torch.nn.Module", "torch.nn.Linear",
    "torch.nn.Parameter", "torch.nn.functional", "torch.nn.init", "torch.autograd", "torch.autograd.Function",
    "torch.autograd.functional", "torch.autograd.grad_mode", "torch.optim", "torch.optim.Optimizer",
    "torch.optim.SGD", "torch.optim.Adam", "torch.linalg", "torch.func", "torch.testing", "torch.random",
)
SIGNALS = tuple(getattr(signal, name) for name in ("SIGXCPU", "SIGTERM", "SIGINT", "SIGALRM", "SIGPIPE", "SIGCHLD",
                                                   "SIGUSR1", "SIGUSR2", "SIGVTALRM", "SIGPROF", "SIGSEGV")
                if hasattr(signal, name))
_SYS_NAMES = ("stdin", "stdout", "stderr", "displayhook", "excepthook", "meta_path", "path_hooks", "settrace",
              "setprofile")
# Memory a test may leave allocated and still hand its process to the next test.
KEEP_GROWTH_BYTES = 64 * 1024 * 1024
# CPU seconds a test's process may have used and still serve the next test with a full CPU limit of its own: the
# hard RLIMIT_CPU of every test process is the limit + 1 s of grace + this (soft limits move, hard ones cannot).
KEEP_CPU_SECONDS = 2


def fingerprint() -> tuple[Any, ...]:
    """Everything this module compares, as one value (equal fingerprints: nothing we watch has changed)."""
    return (_torch_modes(), _namespaces(), _sys_state(), _signals(), threading.active_count(), _tasks())


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
    """Per namespace: each attribute's name and object identity, module-valued ones (lazy imports) left out."""
    found = []
    for path in NAMESPACES:
        target = _resolve(path)
        if target is None:
            continue
        try:
            # type(), not isinstance(): an object's __class__ may be a property that runs code (and takes time).
            items = {name: id(value) for name, value in vars(target).items()
                     if not issubclass(type(value), ModuleType)}
        except TypeError:  # no __dict__: something odd happened
            items = {"<unreadable>": id(target)}
        found.append((path, id(target), items))
    return tuple(found)


def _torch_modes() -> tuple[Any, ...]:
    torch = sys.modules.get("torch")
    if torch is None:
        return ()
    readers = (
        torch.is_grad_enabled, torch.is_inference_mode_enabled, torch.get_default_dtype,
        getattr(torch, "get_default_device", lambda: None), torch.is_anomaly_enabled,
        torch.are_deterministic_algorithms_enabled, torch.get_num_threads, torch.get_float32_matmul_precision,
        lambda: torch._C._len_torch_function_stack(), lambda: torch._C._len_torch_dispatch_stack(),
        lambda: torch._C._is_torch_function_enabled(), lambda: torch.autograd.graph._is_checkpoint_valid(),
        lambda: torch.get_printoptions() if hasattr(torch, "get_printoptions") else None,
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


def _tasks() -> int:
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
    """This process's resident memory, from /proc (0 where it cannot be read)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
