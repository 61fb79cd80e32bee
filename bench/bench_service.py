"""The service path against the naive baseline, in one run (issue 9): throughput, CPU, latency, memory, growth.

    PYTHONPATH=. .venv/bin/python bench/bench_service.py            # the full sizes (run it on a quiet machine)
    PYTHONPATH=. .venv/bin/python bench/bench_service.py --quick    # every size shrunk, a few minutes

Phases, in this order, all in one run:

1. naive: a fresh `docker run` of the runner image per submission (cold Python importing torch and pytest and
   executing the file: `bench_runners.naive_baseline`), two at a time; submissions/s and machine CPU each.
2. the real service (`bench_rush.service`): its own Redis, a fresh PostgreSQL database, `--workers` x
   `grader worker --concurrency SLOTS` (`--slots`, 2 by default: one worker with two slots, as `grader serve`
   runs on this 2-core machine) on the docker runner with GRADER_SANDBOX=fork, and beat; uploads go through
   the API (the Flask app in this process). A warm-up grades a few submissions so that every slot has its judge
   zygote and every worker its sandbox zygote container; then:
   * memory: PSS per warm slot (each worker's process tree plus its zygote containers' processes, divided by
     its slots);
   * idle: `--idle` uploads one at a time, `--idle-gap` s apart; upload → score stored, broken down;
   * burst: `--burst` uploads as fast as the API takes them; drain, throughput, CPU, ratio to naive, and the
     100 ms periods in which the zygote containers ran out of their CPU quota (none, unless it is too small);
   * students: `--rush` uploads from `--students` students, drain time (bench_rush's rush);
   * growth: `--growth` more submissions; fds, processes, mounts, network namespaces, cgroups and zygote
     containers of the slots before and after (back at baseline once idle: no growth).
3. take child / teardown: the judge-side cost of one forked sandbox (`forked.spawn`, `ForkedSandbox.stop`)
   timed against a zygote container of this process's own, because the service records neither. (A job whose
   collecting judge leased its child ahead, `worker/engine/judge/spare.py`, pays no take child on its path.)

Machine CPU is /proc/stat's busy time over the phase (the whole machine: dockerd, containers, PostgreSQL,
Redis, this process's uploads), so other load on the machine inflates it; the burst's is also split by role
(sandboxes, judges, workers, API, PostgreSQL, ...: `cpu_roles`). Prints one table, each figure beside its target.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import cpu_roles  # noqa: E402
from bench_probes import GROWTH_KEYS, memory, slots, steady, zygote_containers_per_worker, zygote_throttling  # noqa: E402
from bench_runners import machine_cpu_seconds, naive_baseline  # noqa: E402
from bench_rush import Rush, Service, exit_on_sigterm, percentile, run_rows, rush, service, wait_drained  # noqa: E402

from tests.conftest import REFERENCE_SOLUTION, upload  # noqa: E402

# The targets. "max": the figure must not exceed it; "min": must reach it.
TARGETS: dict[str, tuple[str, float]] = {
    "burst throughput / naive": ("min", 20.0),
    "burst machine CPU per submission (s)": ("max", 0.150),
    "idle upload → score p50 (s)": ("max", 0.3),
    "idle upload → score p99 (s)": ("max", 0.5),
    "students rush drain (s)": ("max", 15.0),
    "PSS per warm slot, max (MB)": ("max", 400.0),
}


# --- naive baseline ------------------------------------------------------------------------------------------
def naive(count: int, parallel: int = 2, image: str | None = None) -> dict[str, float]:
    """`count` fresh containers of the runner image, `parallel` at a time: submissions/s, machine CPU each."""
    from worker.engine.image import ensure_image

    run = naive_baseline(image or ensure_image())
    first = run(REFERENCE_SOLUTION)  # unmeasured: page cache, image layers
    if first.returncode != 0:
        raise RuntimeError(f"the naive container failed: {first.stderr[-2000:]!r}")
    cpu0, wall0 = machine_cpu_seconds(), time.perf_counter()
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        results = list(pool.map(run, [REFERENCE_SOLUTION] * count))
    wall, cpu = time.perf_counter() - wall0, machine_cpu_seconds() - cpu0
    failed = sum(1 for r in results if r.returncode != 0)
    return {"count": count, "wall": wall, "throughput": count / wall, "cpu_per": cpu / count, "failed": failed}


# --- phases on the running service ---------------------------------------------------------------------------
def check_worktree_code(svc: Service) -> None:
    """Each worker runs from this checkout (its cwd is the repository, which `python -m` puts first)."""
    for child in svc.workers:
        cwd = Path(f"/proc/{child.process.pid}/cwd").resolve()
        if cwd != ROOT.resolve():
            raise RuntimeError(f"worker {child.process.pid} runs in {cwd}, not {ROOT}")


def warm_up(svc: Service, timeout: float = 300.0) -> list[int]:
    """Grade submissions until every worker graded at least one and has its zygote containers (one, or one per
    slot where a child cannot have cgroups of its own: `zygote_containers_per_worker`)."""
    ids: list[int] = []
    deadline = time.monotonic() + timeout
    expected = zygote_containers_per_worker(svc.slots)
    while time.monotonic() < deadline:
        ids += rush(svc, 2 * svc.slots, timeout=deadline - time.monotonic()).ids
        hosts = {r["worker"] for r in run_rows(svc.app, ids)}
        if len(hosts) >= len(svc.workers) and all(len(s.containers) >= expected for s in slots(svc)):
            return ids
    raise RuntimeError("the warm-up did not reach every worker")


def idle(svc: Service, count: int, gap: float, timeout: float = 120.0) -> dict[str, Any]:
    """`count` uploads, each after the previous one's score is stored plus `gap` s; latencies from SQL."""
    client = svc.app.test_client()
    data = REFERENCE_SOLUTION.read_bytes()
    ids = []
    for index in range(count):
        time.sleep(gap)
        with svc.app.app_context():
            response = upload(client, "autograd", data, headers=svc.students[index % len(svc.students)].headers)
        if response.status_code != 202:
            raise RuntimeError(f"upload refused: {response.status_code} {response.json}")
        ids.append(int(response.json["id"]))
        if not wait_drained(svc.app, timeout, interval=0.01):
            raise RuntimeError(f"submission {ids[-1]} not graded within {timeout} s")
    rows = run_rows(svc.app, ids)
    parts: dict[str, list[float]] = {"total": [], "pickup": [], "engine": [], "bookkeeping": [], "sandboxes": [],
                                     "ahead": []}
    for row in rows:
        started, finished, created = row["started_at"], row["finished_at"], row["created_at"]
        run_time = (finished - started).total_seconds()
        parts["total"].append((finished - created).total_seconds())
        parts["pickup"].append((started - created).total_seconds())
        parts["engine"].append(float(row["execution_time"] or 0.0))
        parts["bookkeeping"].append(run_time - float(row["execution_time"] or 0.0))
        environment = (row["result"] or {}).get("environment") or {}
        parts["sandboxes"].append(float(environment.get("sandboxes", 0)))
        parts["ahead"].append(float(environment.get("sandboxes_ahead", 0)))  # taken before the job came
    return {"ids": ids, "rows": rows, **{k: v for k, v in parts.items()}}


def child_probe(count: int, gap: float = 0.3) -> dict[str, list[float]]:
    """Take child (`spawn`) and teardown (`stop`) of a forked sandbox, timed from the judge's side against a
    zygote container this process starts for the purpose (the service records neither)."""
    from worker.engine.manifest import get_assignment
    from worker.engine.runners.base import SandboxSpec
    from worker.engine.runners.docker import DockerRunner
    from worker.engine.runners.forked import spawn

    limits = get_assignment("autograd").limits
    handle = DockerRunner(sandbox="fork").start_zygote(SandboxSpec(limits=limits, gpu=False))
    take, teardown = [], []
    try:
        handle.wait_ready()
        for _ in range(count + 1):
            time.sleep(gap)  # the zygote pre-forks the next child meanwhile, as between two idle gradings
            t0 = time.perf_counter()
            sandbox = spawn(handle.socket_path, limits)
            t1 = time.perf_counter()
            sandbox.stop()
            t2 = time.perf_counter()
            take.append(t1 - t0)
            teardown.append(t2 - t1)
    finally:
        handle.stop()
    return {"take": take[1:], "teardown": teardown[1:]}


def burst(svc: Service, count: int, timeout: float) -> tuple[Rush, float, dict[str, float]]:
    """A rush of `count` uploads; its figures, the machine CPU seconds it cost, and where they went (ms per
    submission by role: `cpu_roles`)."""
    roles0, cpu0 = cpu_roles.snapshot(svc), machine_cpu_seconds()
    result = rush(svc, count, timeout=timeout)
    cpu = machine_cpu_seconds() - cpu0
    return result, cpu, cpu_roles.breakdown(roles0, cpu_roles.snapshot(svc), cpu, len(result.ids))


def growth(svc: Service, count: int, timeout: float) -> dict[str, Any]:
    """Resources before and after `count` more submissions (after: once idle, back at or below baseline)."""
    before = steady(svc)
    result = rush(svc, count, timeout=timeout)
    after = steady(svc, timeout=30.0, like=before)
    return {"before": before, "after": after, "rush": result,
            "grown": {k: after[k] - before[k] for k in GROWTH_KEYS if after[k] > before[k]}}


# --- the whole run -------------------------------------------------------------------------------------------
@dataclass
class Sizes:
    """How much of each phase to run (0 skips a phase)."""

    naive: int = 20
    burst: int = 200
    idle: int = 20
    idle_gap: float = 1.0
    rush: int = 100
    students: int = 10
    growth: int = 1000
    workers: int = 1
    slots: int = 2
    probe: int = 20
    timeout: float = 3600.0


QUICK = Sizes(naive=4, burst=10, idle=5, rush=10, growth=30, probe=5)


@dataclass
class Report:
    """Everything measured, and the table rows built from it."""

    sizes: Sizes
    figures: dict[str, Any] = field(default_factory=dict)
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)  # every submission graded in the service phases


def measure(sizes: Sizes, log: Callable[[str], None] = print,
            before_stop: Callable[[Service, list[int]], None] | None = None) -> Report:
    """Run every phase with `sizes`; the report (the service is stopped when this returns).

    `before_stop(service, ids)` runs while the service and its database still exist (the CI form checks every
    graded submission there)."""
    report = Report(sizes)
    figures = report.figures
    phases: dict[str, float] = {}
    figures["phase_seconds"] = phases
    clock = [time.monotonic(), "start"]

    def log_phase(line: str) -> None:  # a phase begins: the previous one ends
        now = time.monotonic()
        phases[str(clock[1])] = round(now - float(clock[0]), 1)
        clock[:] = [now, line.split(":")[0]]
        log(line)

    if sizes.naive:
        log_phase(f"naive: {sizes.naive} fresh containers, two at a time …")
        figures["naive"] = naive(sizes.naive)
    env = {"GRADER_SANDBOX": "fork", "PYTHONPATH": str(ROOT)}
    log_phase(f"service: {sizes.workers} workers x {sizes.slots} slots, docker runner, fork sandboxes …")
    with service("docker", sizes.workers, sizes.students, concurrency=sizes.slots, env=env) as svc:
        check_worktree_code(svc)
        logging.getLogger("grader.request").setLevel(logging.WARNING)  # a line per upload drowns the figures
        log_phase("warm-up: every slot grades once …")
        report.ids += warm_up(svc)
        figures["memory_warm"] = memory(svc)
        if sizes.idle:
            log_phase(f"idle: {sizes.idle} uploads, {sizes.idle_gap:g} s apart …")
            figures["idle"] = idle(svc, sizes.idle, sizes.idle_gap)
            report.ids += figures["idle"]["ids"]
        if sizes.burst:
            log_phase(f"burst: {sizes.burst} uploads …")
            throttled = zygote_throttling()
            figures["burst"], figures["burst_cpu"], figures["burst_roles"] = burst(svc, sizes.burst, sizes.timeout)
            figures["burst_throttled"] = {k: v - throttled[k] for k, v in zygote_throttling().items()}
            report.ids += figures["burst"].ids
        if sizes.rush:
            log_phase(f"students: {sizes.rush} uploads from {sizes.students} students …")
            figures["rush"] = rush(svc, sizes.rush, timeout=sizes.timeout)
            report.ids += figures["rush"].ids
        if sizes.growth:
            log_phase(f"growth: {sizes.growth} submissions …")
            figures["growth"] = growth(svc, sizes.growth, sizes.timeout)
            report.ids += figures["growth"]["rush"].ids
            figures["memory_after"] = memory(svc)
        if before_stop is not None:
            before_stop(svc, report.ids)
    log_phase("done: service stopped")
    if sizes.probe:
        log_phase(f"take child / teardown: {sizes.probe} forked sandboxes …")
        figures["probe"] = child_probe(sizes.probe)
    log_phase("end")
    _rows(report)
    return report


def _check(name: str, value: float) -> str:
    kind, target = TARGETS[name]
    return "ok" if (value >= target if kind == "min" else value <= target) else "MISSED"


def _rows(report: Report) -> None:
    f, rows, notes = report.figures, report.rows, report.notes

    def add(name: str, value: float | None, shown: str, target: str = "", check: str | None = None) -> None:
        if check is None:
            check = _check(name, value) if name in TARGETS and value is not None else ""
        if not target and name in TARGETS:
            kind, limit = TARGETS[name]
            target = f"{'≥' if kind == 'min' else '≤'} {limit:g}"
        rows.append((name, shown, target, check))

    naive_fig = f.get("naive")
    if naive_fig:
        add("naive throughput (submissions/s)", None, f"{naive_fig['throughput']:.2f}")
        add("naive machine CPU per submission (s)", None, f"{naive_fig['cpu_per']:.2f}")
        if naive_fig["failed"]:
            notes.append(f"{naive_fig['failed']} naive containers failed")
    if "burst" in f:
        b: Rush = f["burst"]
        throughput = len(b.ids) / b.drain if b.drain else 0.0
        add("burst throughput (submissions/s)", None, f"{throughput:.2f} ({len(b.ids)} in {b.drain:.1f} s)")
        if naive_fig:
            ratio = throughput / naive_fig["throughput"]
            add("burst throughput / naive", ratio, f"{ratio:.1f}x", "≥ 20x (aim 40x)")
        cpu_per = f["burst_cpu"] / max(1, len(b.ids))
        add("burst machine CPU per submission (s)", cpu_per, f"{cpu_per * 1000:.0f} ms", "≤ 150 ms")
        roles = dict(f.get("burst_roles") or {})
        named = roles.pop("named_others", {})
        for role, ms in sorted(roles.items(), key=lambda kv: -kv[1]):
            add(f"  {role} (ms per submission)", None, f"{ms:.0f}")
        if roles:
            notes.append("burst CPU by role: each role's processes' own CPU time plus their reaped children's, "
                         "from /proc (bench/cpu_roles.py); 'other' is the machine's busy time no role accounts for"
                         + (", most of it " + ", ".join(f"{name} {ms:.0f}" for name, ms in named.items())
                            if named else "") + ".")
        throttled = f.get("burst_throttled")
        if throttled:
            add("  zygote containers throttled (100 ms periods)", None,
                f"{throttled['nr_throttled']} of {throttled['nr_periods']}, "
                f"{throttled['throttled_time'] / 1e6:.0f} ms held back")
        add("burst upload → score p50 / p99 (s)", None,
            f"{statistics.median(b.latencies):.2f} / {percentile(b.latencies, 0.99):.2f}" if b.latencies else "-")
    if "idle" in f:
        i = f["idle"]
        add("idle upload → score p50 (s)", statistics.median(i["total"]), f"{statistics.median(i['total']):.3f}")
        add("idle upload → score p99 (s)", percentile(i["total"], 0.99), f"{percentile(i['total'], 0.99):.3f}")
        for key, label in (("pickup", "queue pickup (upload → claim)"),
                           ("engine", "engine: judge fork + take child + tests + teardown"),
                           ("bookkeeping", "worker bookkeeping (manifest, file, storing scores)")):
            add(f"  {label} p50 / p99 (s)", None,
                f"{statistics.median(i[key]):.3f} / {percentile(i[key], 0.99):.3f}")
        probe = f.get("probe")
        if probe:
            take, down = statistics.median(probe["take"]), statistics.median(probe["teardown"])
            ahead = sum(1 for a in i["ahead"] if a)
            add("  take child p50 / p99 (s), probe", None, f"{take:.4f} / {percentile(probe['take'], 0.99):.4f}"
                f" ({ahead} of {len(i['ahead'])} jobs took one leased ahead: off their path)")
            add("  teardown p50 / p99 (s), probe", None,
                f"{down:.4f} / {percentile(probe['teardown'], 0.99):.4f}")
            boxes = statistics.median(i["sandboxes"])
            tests = [e - (s - a) * take - s * down
                     for e, s, a in zip(i["engine"], i["sandboxes"], i["ahead"], strict=True)]
            add(f"  tests (engine - {boxes:g} sandboxes x (take, unless leased ahead, + teardown)) p50 (s)", None,
                f"{statistics.median(tests):.3f}")
        notes.append("idle breakdown: queue pickup, engine time and bookkeeping come from each run's row "
                     "(started_at - upload, execution_time, finished_at - started_at - execution_time); take "
                     "child and teardown are not recorded by the service (no column, and the result document "
                     "drops per-test durations), so they come from the judge-side probe, and tests are the "
                     "engine time less those (the judge's fork and pytest's collection stay in 'tests').")
    if "rush" in f:
        r: Rush = f["rush"]
        add("students rush drain (s)", r.drain, f"{r.drain:.1f} ({len(r.ids)} uploads, "
            f"{report.sizes.students} students)", "≤ 15 (100 uploads)")
    for key, label in (("memory_warm", "after warm-up"), ("memory_after", "after growth")):
        if f.get(key):
            worst = max(m["total_mb"] for m in f[key])
            detail = ", ".join(f"{m['total_mb']:.0f} MB (worker tree {m['worker_mb']:.0f} + zygote containers "
                               f"{m['container_mb']:.0f}, per slot of {m['slots']}; {m['processes']} processes)"
                               for m in f[key])
            add("PSS per warm slot, max (MB)", worst, f"{worst:.0f} {label}")
            notes.append(f"PSS per slot {label}: {detail}")
    if "growth" in f:
        g = f["growth"]
        for name in GROWTH_KEYS:
            before, after = g["before"][name], g["after"][name]
            add(f"growth over {len(g['rush'].ids)}: {name}", None, f"{before} → {after}", "no growth",
                "ok" if after <= before else "GREW")
        add("  (machine-wide network namespaces, other users' too)", None,
            f"{g['before']['machine_netns']} → {g['after']['machine_netns']}", "", "")
    graded = {"burst": f.get("burst"), "students": f.get("rush"), "growth": f.get("growth", {}).get("rush")}
    for name, result in graded.items():
        if result is not None and (result.graded_full != len(result.ids) or result.runs != len(result.ids)
                                   or result.refused or result.timed_out):
            notes.append(f"{name}: {result.graded_full}/{len(result.ids)} graded with the full score, "
                         f"{result.runs} runs, {result.refused} refused, timed out: {result.timed_out}")
    notes.append("machine CPU is the whole machine's busy time (/proc/stat): other load counts too.")
    if f.get("phase_seconds"):
        notes.append("phase wall seconds: " + ", ".join(f"{k} {v:g}" for k, v in f["phase_seconds"].items()))


def print_report(report: Report) -> None:
    """The table, then the notes."""
    width = max(len(r[0]) for r in report.rows) if report.rows else 10
    shown = max(len(r[1]) for r in report.rows) if report.rows else 10
    print(f"\n{'figure':{width}}  {'measured':{shown}}  {'target':18}  check")
    for name, value, target, check in report.rows:
        print(f"{name:{width}}  {value:{shown}}  {target:18}  {check}")
    for note in report.notes:
        print(f"note: {note}")


def main() -> int:
    """Parse the sizes, run, print the table; exit 1 when a target was missed or something grew."""
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"small sizes: {QUICK}")
    defaults = Sizes()
    for name in ("naive", "burst", "idle", "rush", "students", "growth", "workers", "slots", "probe"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None,
                            help=f"default {getattr(defaults, name)} (0 skips the phase)")
    parser.add_argument("--idle-gap", type=float, default=None, help=f"default {defaults.idle_gap} s")
    parser.add_argument("--timeout", type=float, default=None, help="per phase, seconds")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    options = parser.parse_args()
    sizes = dataclasses.replace(QUICK if options.quick else defaults)
    for name in vars(sizes):
        if getattr(options, name, None) is not None:
            setattr(sizes, name, getattr(options, name))
    report = measure(sizes, log=lambda line: print(line, flush=True))
    print_report(report)
    if options.json:
        options.json.write_text(json.dumps(report.figures, default=_jsonable, indent=1))
    return 1 if any(r[3] in ("MISSED", "GREW") for r in report.rows) else 0


def _jsonable(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return {k: getattr(value, k) for k in value.__dataclass_fields__}
    return str(value)


if __name__ == "__main__":
    raise SystemExit(main())
