"""The output mirror's reader (`worker/sandbox/calloutput.py`): the post-import process reads what a dead test's
process left in memory the student's code could write, so does a forged or cut-off mirror still read as bounded
text, never an exception or more than the mapping holds?

The writers here are plain forks of this process that write into the mapping and die, as a test's process does;
`tests/engine/test_engine_crash_output.py` runs the whole path in a sandbox.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

from worker.sandbox.calloutput import CappedOutput, Mirror, Mirrors


def died_after(write: Callable[[Mirror], None], limit: int = 64) -> tuple[Mirrors, int]:
    """Fork a process that runs `write` on a fresh mirror and exits at once (no reply, no clean-up)."""
    mirrors = Mirrors()
    mirror = Mirror(limit)
    pid = os.fork()
    if pid == 0:
        try:
            write(mirror)
        finally:
            os._exit(3)
    mirrors.by_pid[pid] = mirror
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 3
    return mirrors, pid


def test_what_a_dying_process_printed_is_read_back_with_what_was_dropped() -> None:
    """Does the reader get the kept text of a process that died mid-call, with the count of what the cap dropped?"""
    def write(mirror: Mirror) -> None:
        output = CappedOutput(10, mirror)
        output.write("héllo ")
        output.write("wörld and more")

    mirrors, pid = died_after(write)
    assert mirrors.printed(pid) == "héllo wörl\n… [10 more characters of output dropped]"
    assert mirrors.printed(pid) == "" and not mirrors.by_pid  # read once, then unmapped


def test_a_forged_length_and_broken_text_read_as_bounded_text() -> None:
    """When the student's code writes a length far past the mapping and bytes that are not UTF-8, does the reader
    return at most what the mapping holds, decoded with replacements, instead of failing?"""
    def forge(mirror: Mirror) -> None:
        size = len(mirror.map)
        mirror.map[:] = b"\xff" * size
        struct.pack_into("<II", mirror.map, 0, 0xFFFFFFFF, 0)

    mirrors, pid = died_after(forge, limit=16)
    text = mirrors.printed(pid)
    assert text == "\ufffd" * (4 * 16), text  # the whole text area, no more


def test_a_mirror_cleared_after_a_reply_reads_as_nothing() -> None:
    """Once a call's reply is sent the mirror is cleared: does a process that dies between calls report no output
    (its text stays in the mapping's bytes, but not as output)?"""
    def write_then_clear(mirror: Mirror) -> None:
        CappedOutput(64, mirror).write("sent with its reply already")
        mirror.clear()

    mirrors, pid = died_after(write_then_clear)
    assert mirrors.printed(pid) == ""


def test_a_test_the_judge_ended_reads_nothing() -> None:
    """Is a mirror of a process the judge ended unmapped without being read?"""
    mirrors, pid = died_after(lambda mirror: CappedOutput(64, mirror).write("not a crash"))
    assert mirrors.printed(pid, died=False) == "" and not mirrors.by_pid
