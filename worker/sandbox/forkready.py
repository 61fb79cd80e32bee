"""Make a warmed process cheap to fork many times: its objects out of the collector's way, its heap in huge pages.

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

Standard library only (the sandbox zygote and the judge zygote both use it).
"""

from __future__ import annotations

import ctypes
import gc

MADV_HUGEPAGE = 14
MADV_COLLAPSE = 25
HUGE = 2 << 20
THP_SETTING = "/sys/kernel/mm/transparent_hugepage/enabled"

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
    try:
        with open("/proc/self/maps", encoding="ascii") as handle:
            ranges = anonymous_ranges(handle.read())
    except OSError:
        return 0
    done = 0
    for start, end in ranges:
        # MADV_HUGEPAGE first, so that what grows there later may be huge too (THP "madvise" mode).
        _libc.madvise(start, end - start, MADV_HUGEPAGE)
        if _libc.madvise(start, end - start, MADV_COLLAPSE) == 0:
            done += end - start
    return done


def settle() -> None:
    """Call once warm, before the first fork (see the module's docstring)."""
    gc.collect()
    collapse_heap()
    gc.freeze()
