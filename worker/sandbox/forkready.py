"""Make a warmed process cheap to fork many times and small to keep: its objects out of the collector's way, its
heap in huge pages, the library pages it only needed while importing let go.

A process that imported torch holds ~200 MB of anonymous memory. Forking it costs the parent a copy of the page
tables for all of it and the child a teardown of them at exit — about 7 ms a fork in 4 KiB pages, and a child
whose garbage collector walks the inherited objects writes to every one of them (copy-on-write: ~200 ms). So a
zygote, once warm, calls `settle()`:

* `gc.freeze()` moves every object that exists now into the collector's permanent generation: a forked child
  never scans (and so never copies) them. Only what exists at that moment is frozen, so a long-lived zygote does
  not keep its later garbage.
* `MADV_COLLAPSE` (Linux 6.1+) turns the anonymous heap into transparent huge pages: fork then copies one entry
  per 2 MiB instead of 512, and a child's write splits only the huge page it touches (one 4 KiB copy, the rest
  stays shared). Best effort: where the kernel has THP off or lacks MADV_COLLAPSE, nothing changes.
* `MADV_DONTNEED` on the file mappings that are read-only and hold no copy-on-write page of their own: importing
  torch touches most of its ~60 MB of library code once (static initialisers), and the zygote would keep all of
  it mapped, counted in its memory alone. A fork does not inherit those pages anyway (a child maps what it
  touches from the page cache), and every page reads back exactly as the file has it. Writable mappings and
  read-only ones with a page of their own (relocated data) are never touched: dropping those would lose what
  was written there.

Standard library only (the sandbox zygote and the judge zygote both use it).
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys
from collections.abc import Callable

MADV_DONTNEED = 4
MADV_HUGEPAGE = 14
MADV_COLLAPSE = 25
HUGE = 2 << 20
THP_SETTING = "/sys/kernel/mm/transparent_hugepage/enabled"
GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/kfd")  # NVIDIA's driver, AMD's (ROCm)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def _thp_usable() -> bool:
    try:
        with open(THP_SETTING, encoding="ascii") as handle:
            return "[never]" not in handle.read()
    except OSError:
        return False


def anonymous_ranges(maps: str) -> list[tuple[int, int]]:
    """The 2 MiB-aligned parts of the private, writable, anonymous mappings in a /proc/PID/maps text."""
    ranges = []
    for line in maps.splitlines():
        parts = line.split()
        if len(parts) < 5 or not parts[1].startswith("rw") or parts[1][3] != "p":
            continue
        if len(parts) > 5 and parts[5] != "[heap]":
            continue  # files, stacks, vdso: not ours to reshape
        low, high = (int(x, 16) for x in parts[0].split("-"))
        start, end = (low + HUGE - 1) & ~(HUGE - 1), high & ~(HUGE - 1)
        if end > start:
            ranges.append((start, end))
    return ranges


def collapse_heap() -> int:
    """Ask the kernel to back this process's anonymous heap with huge pages now; the bytes it accepted."""
    if not _thp_usable():
        return 0
    ranges = _own_ranges("/proc/self/maps", anonymous_ranges)
    # MADV_HUGEPAGE first, so that what grows there later may be huge too (THP "madvise" mode).
    _advise(ranges, MADV_HUGEPAGE)
    return _advise(ranges, MADV_COLLAPSE)


def pristine_file_ranges(smaps: str) -> list[tuple[int, int]]:
    """The file mappings in a /proc/PID/smaps text that are read-only and hold no page of their own (no
    copy-on-write copy: `Anonymous: 0 kB`), so that every page reads exactly as the file does."""
    ranges: list[tuple[int, int]] = []
    current: tuple[int, int] | None = None
    for line in smaps.splitlines():
        parts = line.split()
        if not parts:
            continue
        if "-" in parts[0] and len(parts) >= 5 and not parts[0].endswith(":"):
            current = None
            if len(parts) > 5 and parts[5].startswith("/") and parts[1][1] == "-" and parts[4] != "0":
                low, high = (int(x, 16) for x in parts[0].split("-"))
                current = (low, high)
        elif parts[0] == "Anonymous:" and current is not None:
            if parts[1] == "0":
                ranges.append(current)
            current = None
    return ranges


def release_file_pages() -> int:
    """Unmap this process's pages of read-only, unmodified file mappings (the libraries' code and constants):
    most were touched once, while importing, and a fork never inherits them anyway (a child maps what it
    touches from the page cache, as the zygote would). Its memory then counts only what it holds of its own;
    the kernel keeps those file pages cached, or drops the cold ones when memory is short. The bytes unmapped."""
    return _advise(_own_ranges("/proc/self/smaps", pristine_file_ranges), MADV_DONTNEED)


def _own_ranges(path: str, parse: Callable[[str], list[tuple[int, int]]]) -> list[tuple[int, int]]:
    """`parse` of this process's /proc file at `path` (none where it cannot be read)."""
    try:
        with open(path, encoding="ascii") as handle:
            return parse(handle.read())
    except OSError:
        return []


def _advise(ranges: list[tuple[int, int]], advice: int) -> int:
    """madvise() each range; the bytes of those the kernel accepted."""
    return sum(end - start for start, end in ranges if _libc.madvise(start, end - start, advice) == 0)


def settle() -> None:
    """Call once warm, before the first fork (see the module's docstring)."""
    gc.collect()
    collapse_heap()
    gc.freeze()
    release_file_pages()


def keep_cuda_uninitialised() -> None:
    """Have `torch.cuda.is_available()` ask NVML rather than the CUDA driver, in this process and its children.

    torch's own modules ask it (importing the compiler, which an optimizer's first use does, say), and asking the
    driver initialises it: torch then marks every forked child as unable to use CUDA ("Cannot re-initialize CUDA
    in forked subprocess"), and a GPU test's tensors would silently stay on the CPU. Call it before torch is
    imported in any process that forks children which may use the GPU.
    """
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")


def gpu_visible() -> bool:
    """Whether torch in this process could see a GPU; asked without initialising CUDA or NVML. Call it once torch
    is imported.

    Where one is visible, a zygote must leave to each child what touches it. Autograd's first backward starts a
    thread per GPU, whatever device the tensors are on, and from then on torch refuses backward in every forked
    child ("Unable to handle autograd's threading in combination with fork-based multiprocessing"); an
    optimizer's step asks whether CUDA graphs are being captured, which initialises the CUDA driver, and a child
    then fails its first CUDA call ("CUDA error: initialization error").
    """
    version = sys.modules["torch"].version
    if version.cuda is None and getattr(version, "hip", None) is None:
        return False
    if version.cuda is not None and os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        return False
    return any(os.path.exists(path) for path in GPU_DEVICE_FILES)


def check_cuda_in_a_fork() -> None:
    """Where a GPU is visible: fork a child that initialises CUDA; RuntimeError if it cannot.

    A zygote whose warm-up (or a torch upgrade) initialised the CUDA driver would hand out children that cannot
    use the GPU: a test's tensors would stay on the CPU and a correct solution lose points. Failing to start is
    our failure instead, and says why. Costs one CUDA initialisation, in the child, once per zygote.
    """
    if not gpu_visible():
        return
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            torch = sys.modules["torch"]
            if torch.cuda.device_count() > 0:
                torch.cuda.init()
                torch.ones(1, device="cuda").sum().item()
        except BaseException as exc:
            print(f"CUDA in a forked child: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise RuntimeError("a process forked from this zygote cannot use CUDA: something in the warm-up "
                           "initialised the CUDA driver before the fork (see worker/sandbox/forkready.py)")
