"""Trying to break out of the local runner's sandbox, one question at a time, in both sandbox modes.

Every probe runs twice, against a fresh sandbox process ("fresh", the parity baseline) and against a child
forked from a sandbox zygote ("fork", the default), and must get the same verdict from both. Each test starts
real sandboxes (`LocalRunner(sandbox=mode).prepare(...)`), loads a probe module as the student's
`solution.py` and calls its functions over the wire protocol, exactly as the judge does; the probe reports what
it could see and do from the inside, and the test checks it from the outside too where that is possible (the
worker's /proc, its files, a listening socket). A few tests grade a tiny assignment written into `tmp_path`, to
check what the engine as a whole hands to the sandbox. The limits, and what a stopped sandbox leaves, are
`test_sandbox_limits.py`'s. No hostile code runs outside a sandbox; network checks only target 127.0.0.1.
"""


from __future__ import annotations

import errno
import os
import socket
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.isolation_probe import (
    HIDDEN_TESTS,
    MB,
    REFERENCE,
    REPO,
    SANDBOX_TMP,
    WORKER_TMP,
    needs_namespaces,
    needs_root,
    only_leads_to_python,
)
from tests.support.sandbox_support import Probe
from worker.engine.runners.local import SANDBOX_UIDS

pytestmark = needs_namespaces


# -- who the student is ------------------------------------------------------------------------------------
@needs_root
def test_student_is_nobody_without_capabilities(probe: Callable[..., Probe]) -> None:
    """Does student code run as a sandbox uid of its own, with no capabilities, groups or way to gain privileges?"""
    me = probe().call("identity")
    assert me["uid"] in SANDBOX_UIDS and me["uid"] == me["euid"] == me["gid"]
    assert me["groups"] == [] or me["groups"] == [me["uid"]]
    for field in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(me[field], 16) == 0, f"{field} is {me[field]}"
    assert me["NoNewPrivs"] == "1"


@needs_root
def test_setuid_binaries_give_nothing_back(probe: Callable[..., Probe]) -> None:
    """Can student code become root again through a setuid-root binary (mount, su)?"""
    p = probe()
    mounted = p.call("run", ["mount", "-t", "tmpfs", "none", SANDBOX_TMP])
    assert mounted["rc"] != 0, mounted
    assert "superuser" in mounted["err"] or "permission" in mounted["err"].lower(), mounted
    whoami = p.call("run", ["id", "-u"])
    assert int(whoami["out"].strip()) in SANDBOX_UIDS


def test_student_code_runs_under_the_seccomp_filter_and_makes_no_namespaces(probe: Callable[..., Probe]) -> None:
    """Does student code run under the sandbox's seccomp filter in both modes (a fresh sandbox process too, as a
    zygote's child and a container do), so that it cannot make a namespace even where this host lets any user
    make user namespaces?"""
    p = probe()
    me = p.call("identity")
    assert me["Seccomp"] == "2" and me["NoNewPrivs"] == "1", me
    for argv in (["unshare", "--user", "true"], ["unshare", "--user", "--map-root-user", "--net", "true"]):
        made = p.call("run", argv)
        assert made["rc"] != 0 and "Operation not permitted" in made["err"], (argv, made)


def test_limits_cannot_be_raised(probe: Callable[..., Probe]) -> None:
    """Can student code lift its own resource limits?"""
    attempts = probe().call("raise_limits")
    assert all(outcome != "raised" for outcome in attempts.values()), attempts


# -- what the student can reach ------------------------------------------------------------------------------
def test_no_network(probe: Callable[..., Probe]) -> None:
    """Can student code reach a service listening on the worker's 127.0.0.1 (as Redis and PostgreSQL do)?"""
    accepted: list[object] = []
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        server.settimeout(0.2)
        port = server.getsockname()[1]
        seen = probe().call("network", port, ["/var/run/docker.sock", "/run/docker.sock",
                                              "/var/run/postgresql/.s.PGSQL.5432"])
        try:
            conn, peer = server.accept()
            conn.close()
            accepted.append(peer)
        except TimeoutError:
            pass
    assert seen["reached"] == [], seen
    assert accepted == []
    assert seen["interfaces"] == ["lo"], seen
    assert not seen["lo_flags"] & 0x1, f"lo is up (flags {seen['lo_flags']:#x})"  # IFF_UP
    assert seen["errors"]["127.0.0.1"] in (errno.ENETUNREACH, errno.ECONNREFUSED), seen


def test_does_the_sandbox_have_a_host_name_of_its_own(probe: Callable[..., Probe]) -> None:
    """Does student code see the name a container and a forked child have ("sandbox"), not the worker's?"""
    assert probe().call("hostname") == "sandbox"


def test_only_sandbox_processes_are_visible(probe: Callable[..., Probe]) -> None:
    """Can student code see or signal the worker's processes (the judge, the web app, the database)?"""
    seen = probe().call("processes", os.getpid())
    assert seen["me"] == 1, "the student server is the first process of its own pid namespace"
    assert set(seen["pids"]) == {"1"}, seen["pids"]
    assert "student_server.py" in seen["pids"]["1"] or "zygote.py" in seen["pids"]["1"]
    assert seen["signal_host"] == "no such process"


def test_repository_reference_and_service_data_are_invisible(
        probe: Callable[..., Probe], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Can student code read the reference solution, the hidden tests, the repository or GRADER_HOME?"""
    home = tmp_path / "grader-home"
    home.mkdir()
    secret = f"grader-canary-{uuid.uuid4().hex}"
    (home / "secret_key").write_text(secret)
    (home / "grader.db").write_text(secret)
    monkeypatch.setenv("GRADER_HOME", str(home))
    monkeypatch.setenv("SECRET_KEY", secret)
    monkeypatch.setenv("DATABASE_URL", f"postgresql://{secret}@127.0.0.1/grader")
    p = probe()
    wanted = [str(REFERENCE), str(HIDDEN_TESTS), str(REFERENCE.parent), str(REPO / "reference_tests"),
              str(REPO / "grader"), str(REPO / "instance"), str(REPO / "pyproject.toml"), str(home),
              str(home / "secret_key"), str(home / "grader.db"), "/root", "/home", "/var/run/docker.sock",
              "/run", "/var", "/proc/1/root" + str(REFERENCE), "/work/../../" + str(REFERENCE)]
    seen = p.call("paths", wanted)
    leaks = {path: entry for path, entry in seen.items()
             if entry["exists"] and not only_leads_to_python(path, entry)}
    assert leaks == {}, leaks
    env = p.call("environment")
    assert secret not in repr(env)
    assert not set(env) & {"GRADER_HOME", "SECRET_KEY", "DATABASE_URL", "BROKER_URL", "PYTHONPATH"}, env
    # The Python environment is mounted read-only at its real path; nothing else of the repository comes along.
    repo = p.call("paths", [str(REPO)])[str(REPO)]
    assert set(repo.get("listdir", [])) <= {".venv"}, repo


def test_tmp_is_private_and_size_capped(probe: Callable[..., Probe], tmp_path: Path) -> None:
    """Does the sandbox see the worker's /tmp, and can it fill the worker's memory through its own /tmp?"""
    marker = WORKER_TMP / f"grader-isolation-{uuid.uuid4().hex}"
    marker.write_text("the worker's /tmp")
    try:
        p = probe()
        assert p.call("paths", [str(marker)])[str(marker)]["exists"] is False
        # /tmp is a 64 MiB tmpfs: 2 x 30 MiB fit, a third does not.
        below = p.call("write_files", SANDBOX_TMP, 30 * MB, 2)
        assert below == {"written": 2, "errno": None}, below
        p.call("remove_files", SANDBOX_TMP)
        above = p.call("write_files", SANDBOX_TMP, 30 * MB, 3)
        assert above == {"written": 2, "errno": errno.ENOSPC}, above
        assert not any(WORKER_TMP.glob("fill-*")), "the sandbox's /tmp files appeared on the worker"
    finally:
        marker.unlink()


def test_work_dir_cannot_fill_the_disk(probe: Callable[..., Probe]) -> None:
    """Can student code fill the worker's disk through its work directory (no quota on the host folder)?"""
    p = probe()
    # 6 x 30 MiB, each under the 32 MiB file-size limit: 180 MiB. Docker's /work is a 64 MiB tmpfs too.
    result = p.call("write_files", ".", 30 * MB, 6)
    p.call("remove_files", ".")
    assert result["errno"] == errno.ENOSPC and result["written"] <= 2, (
        f"the work directory took {result['written']} x 30 MiB on the worker's disk: it has no size limit")


