"""The short form of bench/bench_service.py (issue 9's benchmark), so that a regression in the service path shows
in CI: the same functions with tiny sizes. Timing belongs to the benchmark and is never asserted here; what is
asserted is that the run completes, that every upload is graded exactly once with the reference solution's
score, and that the slots hold no more descriptors, processes, mounts, network namespaces, cgroups or zygote
containers after the growth phase than before it.

Needs Docker (the runner image), PostgreSQL and redis-server; about two minutes on a 2-core machine.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from tests.conftest import REPO
from tests.support.recovery_support import assert_graded_exactly_once

sys.path.insert(0, str(REPO / "bench"))

import bench_service

TINY = bench_service.Sizes(naive=2, burst=4, idle=3, idle_gap=0.5, rush=0, growth=20, probe=3, timeout=600)


@pytest.fixture(scope="module")
def report(docker_ready: bool) -> bench_service.Report:
    """One tiny run of every phase, with each graded submission checked before the service stops."""
    if not docker_ready:
        pytest.skip("Docker is not available")
    checked: list[int] = []

    def check(svc: Any, ids: list[int]) -> None:
        assert_graded_exactly_once(svc.app, ids, score=100.0)
        checked.extend(ids)

    result = bench_service.measure(TINY, log=lambda _line: None, before_stop=check)
    assert checked == result.ids
    return result


def test_the_short_benchmark_grades_every_upload_exactly_once(report: bench_service.Report) -> None:
    """Does every upload of the short benchmark (warm-up, idle, burst, growth) get exactly one run, graded with the
    reference solution's full score, with nothing refused and no phase timing out?"""
    figures = report.figures
    expected = 2 * TINY.slots  # at least the warm-up's first round
    assert len(report.ids) >= expected + TINY.idle + TINY.burst + TINY.growth
    assert len(set(report.ids)) == len(report.ids)
    for phase, size in (("burst", TINY.burst), ("growth", TINY.growth)):
        result = figures[phase] if phase == "burst" else figures[phase]["rush"]
        assert (len(result.ids), result.runs, result.graded_full, result.refused, result.timed_out) == \
            (size, size, size, 0, False), phase
    assert figures["naive"]["failed"] == 0


def test_the_short_benchmark_leaves_the_slots_as_it_found_them(report: bench_service.Report) -> None:
    """After 20 more submissions, once idle, are the slots' open descriptors, processes, mounts, network
    namespaces, cgroups and zygote containers back at (or below) what they were before?"""
    growth = report.figures["growth"]
    assert growth["grown"] == {}, (growth["before"], growth["after"])
    before = growth["before"]
    # Something was counted: a worker tree (its two slots' judges, the judge master) and its one zygote container
    # with a pre-forked child per slot.
    assert before["containers"] == TINY.workers and before["processes"] > 4 * TINY.workers * TINY.slots
    assert before["netns"] > TINY.workers and before["mounts"] > 0 and before["fds"] > 0 and before["cgroups"] > 0


def test_the_short_benchmark_measures_every_figure_of_the_issue(report: bench_service.Report) -> None:
    """Does the short run produce every figure the issue names (throughput against naive, CPU per submission,
    idle p50/p99 with its breakdown, PSS per warm slot, growth), each with its target in the table?"""
    names = [row[0] for row in report.rows]
    for target in bench_service.TARGETS:
        if target != "students rush drain (s)":  # the tiny run skips the students phase (the burst's code)
            assert target in names, names
    assert any("queue pickup" in n for n in names) and any("take child" in n for n in names)
    assert all(m["total_mb"] > 0 and m["containers"] == 1 for m in report.figures["memory_warm"])
    assert all(row[1] for row in report.rows)
