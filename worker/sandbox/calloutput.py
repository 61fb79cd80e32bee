"""What the student's code prints during one call: captured, capped, and, in a test's own process, mirrored where
the post-import process can read it should that process die in the middle of the call. Runs inside the sandbox;
standard library only.

A reply carries its call's output. A test's process that ends without replying (`os._exit`, a segfault, the memory
limit's SIGKILL, the CPU limit's SIGXCPU) used to take that output with it: the student saw that their code crashed,
never what it printed on the way. Each test's process now gets a small shared mapping of its own (`Mirror`), made
just before its fork; the post-import process reads it only after that process has died (killed by the judge's
interrupt, too, once its call timed out: `testsignals.py`), and sends what it holds with its "reaped" report, which
the judge shows with the test as any call's output. Every later fork closes the mappings of the others, so no test's
process can read what another printed or write into what another will be judged by.

The import has no such reader: it runs in the post-import process itself, and nothing in the sandbox outlives an
import that kills it. What it prints is echoed to the sandbox's stderr as well (`Echo`), whose tail the judge reads
once it has stopped the sandbox, and shows with every test, as any output, where the import ended its sandbox.
"""

from __future__ import annotations

import io
import mmap
import os
import struct
import sys
from typing import Any

OUTPUT_LIMIT = int(os.environ.get("GRADER_OUTPUT_LIMIT", "16384"))  # characters a call's output keeps
_HEADER = struct.Struct("<II")  # bytes of text kept, characters dropped past the cap
_MOST_BYTES_PER_CHARACTER = 4  # UTF-8; a lone surrogate is written as "?"


class Mirror:
    """One test's process's output, shared with the post-import process that forked it: written by the former
    during a call (cleared once the reply is sent: encoding the reply runs the student's code too), read by the
    latter once the former has died."""

    def __init__(self, limit: int) -> None:
        # Anonymous and shared across fork (mmap's default flags): its pages are allocated only when written,
        # so a test that prints nothing costs no memory.
        self.map = mmap.mmap(-1, _HEADER.size + _MOST_BYTES_PER_CHARACTER * max(limit, 0))
        self.used = 0  # in the writing process
        self.dirty = False

    def append(self, text: str, dropped: int) -> None:
        data = text.encode("utf-8", "replace")
        end = min(_HEADER.size + self.used + len(data), len(self.map))
        self.map[_HEADER.size + self.used:end] = data[:end - _HEADER.size - self.used]
        self.used = end - _HEADER.size
        # The header last: a process that dies between the two writes leaves the text as it was before.
        _HEADER.pack_into(self.map, 0, self.used, dropped)
        self.dirty = True

    def clear(self) -> None:
        if self.dirty:
            _HEADER.pack_into(self.map, 0, 0, 0)
            self.used, self.dirty = 0, False

    def read(self) -> str:
        """What the call in progress had printed (in the post-import process, once the writer has died)."""
        used, dropped = _HEADER.unpack_from(self.map, 0)
        used = min(used, len(self.map) - _HEADER.size)  # the writer ran the student's code: trust no figure
        text = self.map[_HEADER.size:_HEADER.size + used].decode("utf-8", "replace")
        return with_dropped(text, dropped)

    def close(self) -> None:
        self.map.close()


def new_mirror(limit: int) -> Mirror | None:
    """A mirror for the next test's process; None where not even this can be mapped (the submission took the
    address space): that test runs all the same, only without its output after a crash."""
    try:
        return Mirror(limit)
    except OSError:
        return None


class Echo:
    """The import's output, written to the sandbox's stderr as it comes, besides being kept for the load's reply:
    an import that ends its sandbox (`os._exit`, a segfault, the memory limit, a timeout) sends no reply, and no
    process of the sandbox outlives it to read a mirror, so the judge shows that stderr's tail instead."""

    def append(self, text: str, dropped: int) -> None:
        data = memoryview(text.encode("utf-8", "replace"))
        try:
            while data:
                data = data[os.write(2, data):]
        except OSError:
            pass  # the student's code closed its stderr: the reply, if one comes, still carries the output


class Mirrors:
    """In the post-import process: the mirror of each test's process it forked and has not seen die, by pid."""

    def __init__(self) -> None:
        self.by_pid: dict[int, Mirror] = {}

    def printed(self, pid: int, died: bool = True) -> str:
        """What the test's process `pid`, gone now, had printed in the call it died in ("" where it died between
        calls, or where the judge ended it: not `died`, and nothing is read); its mirror goes."""
        mirror = self.by_pid.pop(pid, None)
        if mirror is None:
            return ""
        try:
            return mirror.read() if died else ""
        finally:
            mirror.close()

    def close_all(self) -> None:
        """In a process forked just now: unmap every other test's process's output (none may read another's)."""
        for mirror in self.by_pid.values():
            mirror.close()
        self.by_pid.clear()


def with_dropped(text: str, dropped: int) -> str:
    return text + (f"\n… [{dropped} more characters of output dropped]" if dropped else "")


class CappedOutput(io.TextIOBase):
    """A text stream keeping the first `limit` characters written, counting the rest; with a `mirror` (or an
    `Echo`), it writes what it keeps there too."""

    def __init__(self, limit: int, mirror: Mirror | Echo | None = None) -> None:
        self.limit = limit
        self.parts: list[str] = []
        self.size = 0
        self.dropped = 0
        self.mirror = mirror

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        room = self.limit - self.size
        kept = text[:room] if room > 0 else ""
        if kept:
            self.parts.append(kept)
            self.size += len(kept)
        self.dropped += len(text) - len(kept)
        if self.mirror is not None and text:
            self.mirror.append(kept, self.dropped)
        return len(text)

    def text(self) -> str:
        return with_dropped("".join(self.parts), self.dropped)


class captured:
    """Send the student's sys.stdout/sys.stderr writes to `output` for the duration of a call."""

    def __init__(self, output: CappedOutput) -> None:
        self.output = output

    def __enter__(self) -> None:
        self.saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = self.output

    def __exit__(self, *exc: Any) -> None:
        sys.stdout, sys.stderr = self.saved
