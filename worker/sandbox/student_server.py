"""The student server: imports a submission and answers the judge's calls. Runs inside the sandbox.

Everything this process does can be subverted by the student's code (it shares the interpreter), so it holds no
secret and decides nothing: it only turns the judge's requests into calls and the results into plain data. The
judge checks every reply. Protocol frames use the original stdin/stdout; the student's own prints are captured
per call, and fd 1 is pointed at stderr so stray writes cannot corrupt a frame by accident.
"""

from __future__ import annotations

import gc
import importlib
import os
import resource
import signal
import sys
import traceback
import warnings
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import forkready
import globalstate
import values
import wire
from calloutput import OUTPUT_LIMIT, CappedOutput, Echo, captured
from globalstate import KEEP_CPU_SECONDS
from testprocs import TestProcesses

WORK_DIR = os.getcwd()
TRACEBACK_LIMIT = 4000


class Server(TestProcesses):
    """Reads request frames, runs them (each test in a process of its own: `testprocs`), writes reply frames."""

    def __init__(self, proto_in: Any, proto_out: Any) -> None:
        super().__init__()
        self.proto_in = proto_in
        self.proto_out = proto_out
        self.reader = wire.FrameReader()
        self.module: Any = None
        self.module_name = ""
        self.cpu_seconds = 0  # per-test CPU limit each forked test process sets for itself (0: none)

    # -- framing -------------------------------------------------------------------------------------
    def send(self, message: dict[str, Any]) -> None:
        try:
            frame = wire.encode_frame(message)
        except (wire.WireError, TypeError, ValueError) as exc:
            # Keep the request's id: the judge takes a frame that answers no request for one the student's code
            # wrote, so without it the call would fail as a forgery instead of with this message.
            frame = wire.encode_frame({**_error("protocol", "ValueError", f"the reply could not be sent: {exc}"),
                                       "id": message.get("id")})
        self.proto_out.write(frame)
        self.proto_out.flush()

    def receive(self) -> dict[str, Any] | None:
        while True:
            frame = self.reader.next_frame()
            if frame is not None:
                return frame
            chunk = self.proto_in.read1(65536) if hasattr(self.proto_in, "read1") else self.proto_in.read(65536)
            if not chunk:
                return None
            self.reader.feed(chunk)

    def serve(self) -> None:
        while True:
            request = self.receive()
            if request is None:
                return
            op = request.get("op")
            if op == "ping":
                reply = {"ok": True, "value": "pong"}
            elif op == "load":
                reply = self.load(request)
            elif op == "call":
                reply = self.call(request)
            elif op == "fork" and not self.in_test and self.module is not None and request.get("in_place"):
                reply = self.serve_in_place()
            elif op == "fork" and not self.in_test and self.module is not None:
                self.fork_test(request)
                continue  # the test's process answered "forked", and this one "reaped" once it ended
            elif op == "exit" and self.in_test:
                if (request.get("keep") or request.get("park")) and self.keep_for_next_test(bool(request.get("park"))):
                    continue  # the post-import process says "kept" / "parked" once the test's leftovers are gone
                self.end_own_test()
            else:
                reply = _error("protocol", "ValueError", f"unknown op {op!r}")
            self.send({**reply, "id": request.get("id")})
            if self.mirror is not None:
                self.mirror.clear()  # sent: a death from here on has nothing of this call's output to tell

    # -- operations ----------------------------------------------------------------------------------
    def load(self, request: dict[str, Any]) -> dict[str, Any]:
        if os.getpid() == 1:
            # A namespace's init ignores the kernel's SIGXCPU (it only dies of the SIGKILL a second later, which
            # would read as a crash): end with SIGXCPU's exit code instead, so an import over its CPU time
            # reads as the timeout it is. Test processes, forked from here, get the default back.
            signal.signal(signal.SIGXCPU, lambda *_: os._exit(128 + signal.SIGXCPU))
        files = request.get("files", {})
        name = str(request.get("module", "solution"))
        for filename, text in files.items():
            # The judge validated the names; basename() is a second guard against path tricks.
            path = os.path.join(WORK_DIR, os.path.basename(str(filename)))
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(str(text))
        sys.path.insert(0, WORK_DIR)
        output = CappedOutput(OUTPUT_LIMIT, Echo())  # on stderr too, should the import end the sandbox
        threads = globalstate.tasks()
        try:
            with captured(output):
                self.module = importlib.import_module(name)
            self.module_name = name
            gc.freeze()  # each test forks from here: its collector must not walk (and copy) what exists now
            # A thread started by the import (the student's own, autograd's per-GPU ones after a backward, CUDA's
            # once it is initialised) would be missing from every fork, and PyTorch refuses autograd and CUDA
            # in a fork made after them: then each test runs in this process instead (`serve_in_place`).
            forks = globalstate.tasks() <= threads
            self.signals.arm()  # the judge's interrupt, for a test's process that times out (`testsignals.py`)
            return {"ok": True, "value": None, "output": output.text(), "forks": forks}
        except SyntaxError as exc:
            where = f"line {exc.lineno}" if exc.lineno else "unknown line"
            detail = f"{type(exc).__name__}: {exc.msg} ({os.path.basename(exc.filename or name)}, {where})"
            if exc.text:
                detail += f"\n    {exc.text.rstrip()}"
            return _error("syntax", type(exc).__name__, detail, line=exc.lineno, output=output.text())
        except SystemExit as exc:
            return _error("exit", "SystemExit", f"exited while being imported (code {exc.code!r})",
                          output=output.text())
        except BaseException as exc:
            return _exception_reply("import", exc, output)

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.module is None:
            return _error("protocol", "RuntimeError", "no submission is loaded")
        fn_name = str(request.get("fn", ""))
        target = getattr(self.module, fn_name, None) if not fn_name.startswith("_") else None
        if not callable(target):
            return _error("missing", "AttributeError", f"{self.module_name}.py does not define {fn_name}()")
        refs: dict[int, Any] = {}
        try:
            args = [values.decode(a, refs) for a in request.get("args", [])]
            kwargs = {str(k): values.decode(v, refs) for k, v in request.get("kwargs", {}).items()}
        except wire.DeviceUnavailable as exc:  # ours, not the student's: the grading fails as infrastructure
            return _error("device", "RuntimeError", f"this sandbox was given no usable GPU: {exc}")
        except (wire.WireError, SyntaxError, NameError, TypeError, ValueError, AttributeError) as exc:
            return _error("protocol", type(exc).__name__, f"the test's arguments could not be rebuilt: {exc}")
        output = CappedOutput(OUTPUT_LIMIT, self.mirror)
        try:
            with captured(output):
                value = target(*args, **kwargs)
        except SystemExit as exc:
            return _error("exit", "SystemExit", f"{fn_name}() called exit (code {exc.code!r})",
                          output=output.text())
        except NotImplementedError as exc:
            return _error("not_implemented", "NotImplementedError", str(exc), output=output.text())
        except MemoryError:
            return _error("memory", "MemoryError", f"{fn_name}() ran out of memory", output=output.text())
        except BaseException as exc:
            if isinstance(exc, RuntimeError) and _is_allocation_failure(exc):
                return _error("memory", "MemoryError", f"{fn_name}() ran out of memory", output=output.text())
            return _exception_reply("exception", exc, output)
        try:
            ids = {id(obj): ref for ref, obj in refs.items()}
            encoded = values.encode(value, ids)
            writeback = [{"ref": ref, "value": values.encode(obj, ids, top=True)} for ref, obj in refs.items()]
        except BaseException as exc:
            return _error("protocol", type(exc).__name__, f"{fn_name}() returned something that cannot be "
                          f"checked: {exc}", output=output.text())
        return {"ok": True, "value": encoded, "writeback": writeback, "output": output.text()}

def _is_allocation_failure(exc: BaseException) -> bool:
    text = str(exc)
    return "can't allocate memory" in text or "out of memory" in text.lower()


def _error(kind: str, type_name: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"ok": False, "error": {"kind": kind, "type": type_name, "message": message[:TRACEBACK_LIMIT], **extra}}


def _exception_reply(kind: str, exc: BaseException, output: CappedOutput) -> dict[str, Any]:
    """Describe an exception with only the student's own frames in the traceback."""
    # The submission's files lie in the work directory itself (`load`), never below it, and the sandbox's own code
    # may lie below it (a local runner's, run from a checkout under the same path).
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if os.path.dirname(f.filename) == WORK_DIR]
    lines = traceback.format_list(frames) if frames else []
    line = frames[-1].lineno if frames else None
    try:
        message = str(exc)
    except BaseException:
        message = "<the exception's message could not be shown>"
    text = "".join(lines)[-TRACEBACK_LIMIT:]
    return _error(kind, type(exc).__name__, message, traceback=text, line=line, output=output.text())


def warm_up() -> None:
    """Import torch and run autograd's lazy set-up now, so the first graded call does not pay for it.

    A backward with a gradient argument, for one, imports sympy: a third of a second, far more on a busy host.
    Nothing here touches CUDA: a zygote that forks must not have initialised it (`forkready.keep_cuda_uninitialised`),
    nor run backward or an optimizer's step where a GPU is visible (`forkready.gpu_visible`).
    """
    warnings.simplefilter("ignore")  # a warning in a correct solution costs nothing and says nothing
    forkready.keep_cuda_uninitialised()
    import torch

    probe = torch.ones(2, requires_grad=True)
    optimizers = torch.optim.SGD([probe], lr=0.1), torch.optim.Adam([probe], lr=0.1)  # (imports the compiler)
    if not forkready.gpu_visible():
        (probe * probe).sum().backward()
        (probe * probe).backward(torch.ones(2))
        torch.autograd.grad((probe ** 3).sum(), probe)
        torch.autograd.functional.jacobian(lambda t: t * 2, torch.ones(2))
        for optimizer in optimizers:
            optimizer.zero_grad()
            (probe * 2).sum().backward()
            optimizer.step()
    else:
        # No backward or step here (each child's first one sets itself up), but what a backward with a gradient
        # argument imports, imported.
        import torch.autograd.functional
        import torch.fx.experimental.symbolic_shapes
    with torch.no_grad():
        probe.mul_(1.0)
    torch.nn.functional.mse_loss(torch.nn.Linear(2, 1)(probe.detach()), torch.zeros(1))
    try:
        # Every test's process reseeds numpy's generator: its first use imports numpy.random (~7 ms), which must
        # happen here, once, rather than in each fresh fork.
        import numpy.random  # noqa: F401
    except ImportError:
        pass
    # What every test's process does at its start and end (reseed, read its global state) once here too: what
    # those calls set up on first use is then shared with every fork instead of made (and paged in) in each.
    globalstate.reseed()
    globalstate.fingerprint()


def main() -> None:
    """Take over stdin/stdout for frames, warm up torch, say ready, then serve until stdin closes."""
    proto_in = os.fdopen(os.dup(0), "rb", buffering=0)
    proto_out = os.fdopen(os.dup(1), "wb", buffering=0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    warm_up()
    gc.freeze()
    import torch

    server = Server(proto_in, proto_out)
    cpu = float(os.environ.get("GRADER_CPU_SECONDS", "0") or 0)
    if cpu:
        # This process has used some CPU already (torch's import): its own limit counts from here, and each
        # forked test process lowers its soft limit to `cpu` for itself.
        server.cpu_seconds = max(1, round(cpu))
        used = resource.getrusage(resource.RUSAGE_SELF)
        start = int(used.ru_utime + used.ru_stime) + 1
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        want = start + server.cpu_seconds + 1 + KEEP_CPU_SECONDS  # room for a test's process kept (`jail`)
        hard = want if hard == resource.RLIM_INFINITY else min(hard, want)  # only root could raise it
        resource.setrlimit(resource.RLIMIT_CPU, (min(start + server.cpu_seconds, hard), hard))
    if os.environ.get("GRADER_SECCOMP") == "1":
        # A fresh local sandbox: the filter a zygote's child loads as it confines itself (`jail.confine`), before
        # the first byte of the student's (a fresh container has Docker's profile instead).
        import jail
        import seccomp_filter

        jail.no_new_privs()
        seccomp_filter.install()
    server.send({"ready": True, "pid": os.getpid(), "torch": torch.__version__,
                 "cuda": bool(torch.cuda.is_available())})
    server.serve()


if __name__ == "__main__":
    main()
