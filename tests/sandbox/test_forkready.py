"""Does settling a warm process (`worker/sandbox/forkready.py`) give up only memory it can get back unchanged?

`release_file_pages` unmaps the pages of file mappings that are read-only and hold no copy of their own, so that
a zygote's memory counts only what it holds itself. The danger is a mapping whose pages differ from the file
(relocated data, a copy-on-write page): dropping those would corrupt the process. These tests read the choice
off smaps texts, then settle a real process that imported torch and check that it computes exactly what it
computed before, with its memory smaller.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from worker.sandbox import forkready

SMAPS = textwrap.dedent("""\
    00400000-00401000 r--p 00000000 fe:01 100  /usr/bin/python3.11
    Size:                  4 kB
    Rss:                   4 kB
    Anonymous:             0 kB
    7f0000000000-7f0000400000 r-xp 00010000 fe:01 200  /opt/venv/lib/libtorch_cpu.so
    Size:               4096 kB
    Rss:                3000 kB
    Anonymous:             0 kB
    7f0000400000-7f0000500000 r--p 00410000 fe:01 200  /opt/venv/lib/libtorch_cpu.so
    Size:               1024 kB
    Rss:                1024 kB
    Anonymous:           512 kB
    7f0000500000-7f0000600000 rw-p 00510000 fe:01 200  /opt/venv/lib/libtorch_cpu.so
    Size:               1024 kB
    Anonymous:             0 kB
    7f0000600000-7f0000700000 rw-p 00000000 00:00 0
    Anonymous:          1024 kB
    7f0000700000-7f0000800000 r--p 00000000 00:00 0
    Anonymous:             0 kB
    7f0000800000-7f0000900000 r--s 00000000 00:05 300  /dev/shm/shared
    Anonymous:             0 kB
    7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0  [stack]
    Anonymous:           132 kB
    7ffd00100000-7ffd00102000 r-xp 00000000 00:00 0  [vdso]
    Anonymous:             0 kB
""")


def test_which_mappings_are_released_read_only_unmodified_file_pages_only() -> None:
    assert forkready.pristine_file_ranges(SMAPS) == [
        (0x00400000, 0x00401000),  # the interpreter's read-only part
        (0x7F0000000000, 0x7F0000400000),  # a library's code
        (0x7F0000800000, 0x7F0000900000),  # a read-only shared file mapping reads as the file does too
    ]
    # Not: read-only data with copy-on-write pages (relocations), writable file data, anonymous memory, the
    # stack, the vdso (not a file).


def test_a_mapping_without_an_anonymous_line_is_never_released() -> None:
    # An smaps text cut short (or a kernel that stopped printing the field) must not read as "no copies".
    text = "7f0000000000-7f0000400000 r-xp 00010000 fe:01 200  /opt/venv/lib/libx.so\nSize: 4096 kB\n"
    assert forkready.pristine_file_ranges(text) == []


SETTLED = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import torch
    import forkready

    def run():
        x = torch.linspace(-2, 2, 7, requires_grad=True)
        y = (torch.sin(x) * x ** 3).sum()
        y.backward()
        w = torch.nn.Linear(3, 2)
        torch.nn.init.constant_(w.weight, 0.5)
        torch.nn.init.constant_(w.bias, -1.0)
        opt = torch.optim.SGD(w.parameters(), lr=0.1)
        w(torch.ones(4, 3)).pow(2).mean().backward()
        opt.step()
        return [x.grad.tolist(), w.weight.tolist(), w.bias.tolist(), repr(torch.tensor([1.5, 2.25]))]

    def rss_kb():
        return int(next(l for l in open("/proc/self/smaps_rollup") if l.startswith("Rss:")).split()[1])

    before = run()
    rss_before = rss_kb()
    released = forkready.release_file_pages()
    rss_after = rss_kb()
    after = run()
    print(json.dumps({"same": before == after, "released": released, "rss_before": rss_before,
                      "rss_after": rss_after}))
""")


def test_a_settled_torch_process_computes_the_same_with_less_memory(tmp_path: Path) -> None:
    script = tmp_path / "settled.py"
    script.write_text(SETTLED, encoding="utf-8")
    sandbox_code = Path(forkready.__file__).parent
    done = subprocess.run([sys.executable, str(script), str(sandbox_code)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["same"], "the process computed something else after its file pages were released"
    assert figures["released"] > 0
    # torch's code touched while importing is most of a warm process's file pages: tens of MB of them go.
    assert figures["rss_before"] - figures["rss_after"] > 10 * 1024, figures


def test_a_gpu_counts_as_visible_only_for_a_gpu_build_with_a_driver_and_devices_not_hidden(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Does a zygote keep backward and optimizer steps for its children exactly where torch could see a GPU: a CUDA
    build, a driver's device file present, CUDA_VISIBLE_DEVICES not set to nothing?"""
    import torch

    driver = tmp_path / "nvidiactl"
    monkeypatch.setattr(forkready, "GPU_DEVICE_FILES", (str(driver),))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    assert not forkready.gpu_visible()  # no driver
    driver.touch()
    assert forkready.gpu_visible()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert not forkready.gpu_visible()  # every GPU hidden from this process
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert forkready.gpu_visible()
    monkeypatch.setattr(torch.version, "cuda", None)
    assert not forkready.gpu_visible()  # a CPU build sees no GPU


def test_a_zygote_whose_forks_cannot_use_cuda_refuses_to_start(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Where a GPU is visible and a forked child fails to initialise CUDA (a driver initialised before the fork),
    does the check raise, so that no child silently grades a GPU test on the CPU? And does it pass where the
    child's CUDA works?"""
    import torch

    monkeypatch.setattr(forkready, "gpu_visible", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)

    def broken() -> None:
        raise RuntimeError("CUDA error: initialization error")

    monkeypatch.setattr(torch.cuda, "init", broken)
    with pytest.raises(RuntimeError, match="cannot use CUDA"):
        forkready.check_cuda_in_a_fork()
    monkeypatch.setattr(torch.cuda, "init", lambda: None)
    monkeypatch.setattr(torch, "ones", lambda *args, **kwargs: torch.zeros(1))  # (no GPU here to put it on)
    forkready.check_cuda_in_a_fork()
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)  # a GPU build, every device hidden: nothing to check
    monkeypatch.setattr(torch.cuda, "init", broken)
    forkready.check_cuda_in_a_fork()
