"""What a call into the student's code can end in: the exceptions a reference test sees, and the plain
messages they carry (what the student reads)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class StudentError(AssertionError):
    """The student's code raised, or could not be imported; the test fails with this message."""

    def __init__(self, message: str, kind: str = "exception", error: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.error = error or {}


class SandboxLimit(Exception):
    """The student process hit a limit (timeout, memory) or crashed; `status` is the test's status."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class LoadFailure:
    """The submission could not be imported; every call fails with this message."""

    message: str


def location(during: str | None) -> str:
    """Where in the run something happened, as the student reads it."""
    if during == "import":
        return "while importing the submission"
    return f"in {during}()" if during else "while starting"


def load_message(error: dict[str, Any], module: str) -> str:
    """Why the submission could not be imported."""
    kind = error.get("kind")
    message = str(error.get("message", ""))
    if kind == "syntax":
        return f"{module}.py does not compile: {message}"
    if kind == "exit":
        return f"{module}.py {message}"
    where = f" (line {error['line']})" if isinstance(error.get("line"), int) else ""
    text = f"{module}.py raised {error.get('type', 'an exception')} while being imported{where}: {message}"
    if error.get("traceback"):
        text += "\n" + str(error["traceback"])
    return text


def call_error(fn: str, error: dict[str, Any]) -> BaseException:
    """The exception a failed call raises in the test."""
    kind = str(error.get("kind", "exception"))
    message = str(error.get("message", ""))
    if kind == "not_implemented":
        return StudentError(f"{fn}() is not implemented yet (it raises NotImplementedError)", kind, error)
    if kind == "missing":
        return StudentError(message, kind, error)
    if kind == "memory":
        return SandboxLimit("memory", f"ran out of memory in {fn}()")
    if kind == "exit":
        return StudentError(message, kind, error)
    if kind == "protocol":
        return StudentError(message, kind, error)
    where = f" at line {error['line']}" if isinstance(error.get("line"), int) else ""
    text = f"{fn}() raised {error.get('type', 'an exception')}{where}: {message}"
    if error.get("traceback"):
        text += "\n" + str(error["traceback"])
    return StudentError(text, kind, error)
