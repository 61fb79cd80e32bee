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
from tests.support.sandbox_support import children_get_cpu_cgroups

sys.path.insert(0, str(REPO / "bench"))

import bench_service
import cpu_roles
from bench_probes import zygote_containers_per_worker

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
    # Something was counted: a worker tree (its two slots' judges, the judge master) and its zygote containers
    # with a pre-forked child per slot.
    containers = TINY.workers * zygote_containers_per_worker(TINY.slots)
    assert before["containers"] == containers and before["processes"] > 4 * TINY.workers * TINY.slots
    assert before["netns"] > TINY.workers and before["mounts"] > 0 and before["fds"] > 0 and before["cgroups"] > 0


def test_the_short_benchmark_measures_every_figure_of_the_issue(report: bench_service.Report) -> None:
    """Does the short run produce every figure the issue names (throughput against naive, CPU per submission,
    idle p50/p99 with its breakdown, PSS per warm slot, growth), each with its target in the table?"""
    names = [row[0] for row in report.rows]
    for target in bench_service.TARGETS:
        if target != "students rush drain (s)":  # the tiny run skips the students phase (the burst's code)
            assert target in names, names
    assert any("queue pickup" in n for n in names) and any("take child" in n for n in names)
    per_worker = zygote_containers_per_worker(TINY.slots)
    assert all(m["total_mb"] > 0 and m["containers"] == per_worker for m in report.figures["memory_warm"])
    assert all(row[1] for row in report.rows)


def test_at_idle_every_job_takes_a_child_leased_ahead_of_it(report: bench_service.Report) -> None:
    """After the warm-up, does each idle upload's judge find its sandbox already leased (and confined) by its
    slot's collecting judge, so that taking a child is off the submission's path?"""
    idle = report.figures["idle"]
    assert idle["sandboxes"] == [1.0] * TINY.idle and idle["ahead"] == [1.0] * TINY.idle, idle


def test_the_short_benchmark_says_where_the_bursts_cpu_went(report: bench_service.Report) -> None:
    """Is the burst's machine CPU split by role, with the sandboxes and the judges (where grading happens) both
    seen using some, and a row for each role in the table?"""
    roles = report.figures["burst_roles"]
    assert roles["sandboxes"] > 0 and roles["judges"] > 0, roles
    names = [row[0] for row in report.rows]
    for role in (*cpu_roles.ROLES, "interrupts", "other"):
        assert f"  {role} (ms per submission)" in names, names


def test_the_short_benchmark_reads_whether_the_zygote_containers_ran_out_of_cpu(
        report: bench_service.Report) -> None:
    """Are the zygote containers' CPU-quota counters read over the burst (the periods in which they had work, and
    those in which they ran out of quota) and shown in the table? A container that two slots shared with one
    slot's CPU spent most of a burst throttled, which only these counters showed."""
    throttled = report.figures["burst_throttled"]
    assert set(throttled) == {"nr_periods", "nr_throttled", "throttled_time"}
    assert 0 <= throttled["nr_throttled"] <= throttled["nr_periods"], throttled
    if children_get_cpu_cgroups():
        assert throttled["nr_periods"] > 0, throttled  # read, from a container with a quota, that did work
    assert any(row[0] == "  zygote containers throttled (100 ms periods)" for row in report.rows)


def test_a_process_belongs_to_the_role_of_its_nearest_root() -> None:
    """Does a test's process deep in a zygote container count as the sandboxes', a job's judge as the judges' even
    though the judge master is a child of a worker, and do kernel threads and named daemons fall back on their
    names, with anything else left to 'other'?"""
    def proc(pid: int, ppid: int, comm: str = "python", kernel: bool = False) -> cpu_roles.Proc:
        return cpu_roles.Proc(pid=pid, ppid=ppid, comm=comm, kernel=kernel, cpu=1.0)

    procs = {p.pid: p for p in (
        proc(1, 0, "init"), proc(2, 0, "kthreadd", kernel=True), proc(90, 2, "kdamond.0", kernel=True),
        proc(10, 1, "bench"), proc(11, 10), proc(12, 11), proc(13, 12), proc(14, 13),  # worker, master, zygote, job
        proc(20, 1, "containerd-shim"), proc(21, 20, "docker-init"), proc(22, 21), proc(23, 22), proc(24, 23),
        proc(30, 1, "postgres"), proc(31, 30, "postgres"), proc(40, 1, "beam.smp"))}
    roots = {10: "API and client", 11: "workers", 12: "judges", 21: "sandboxes"}
    role = {pid: cpu_roles.role_of(pid, procs, roots) for pid in procs}
    assert [role[p] for p in (10, 11, 12, 14, 21, 24)] == \
        ["API and client", "workers", "judges", "judges", "sandboxes", "sandboxes"]
    assert (role[90], role[20], role[31], role[40], role[1]) == ("kernel threads", "Docker", "PostgreSQL", None, None)


def test_the_breakdown_leaves_what_no_role_accounts_for_to_other() -> None:
    """Over a phase of 10 submissions and 3 busy seconds, are the roles' differences given per submission and the
    rest of the machine's time called 'other', with the unclaimed processes that used most of it named?"""
    before = {**dict.fromkeys(cpu_roles.ROLES, 0.0), "interrupts": 0.0, "other:beam.smp": 5.0}
    after = {**before, "sandboxes": 1.5, "judges": 1.0, "interrupts": 0.1, "other:beam.smp": 5.2, "other:new": 9.0}
    per = cpu_roles.breakdown(before, after, machine_seconds=3.0, count=10)
    assert round(per["sandboxes"]) == 150 and round(per["judges"]) == 100 and round(per["interrupts"]) == 10
    assert round(per["other"]) == 40
    # a process that started during the phase has no reading before it: not counted whole
    assert list(per["named_others"]) == ["beam.smp", "new"] and round(per["named_others"]["new"]) == 0
