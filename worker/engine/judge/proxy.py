"""The `student` object reference tests use: attribute calls run the student's functions in the sandbox.

Arguments go out as plain data; results come back as plain data and are rebuilt as fresh objects in the judge, so
nothing the student returns can carry behaviour (no lying `__eq__`, no pickles). After each call the judge's own
tensor, list and dict arguments receive the state the student's code left them in, which makes in-place semantics
(`sgd_step`, `zero_gradients`) and "caller's tensor mutated" testable with ordinary assertions.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from worker.engine.judge.outcomes import StudentError
from worker.engine.judge.session import StudentSession
from worker.sandbox import wire


class RemoteCode:
    """Source for an object built inside the student process (a function, a model)."""

    def __init__(self, src: str, name: str | None, env: dict[str, Any]) -> None:
        self.src = src
        self.name = name
        self.env = env

    def __repr__(self) -> str:
        return f"<code {self.src.strip().splitlines()[0][:60]!r}>"


class UnsupportedValue:
    """Stands in for a returned object that cannot be checked (it equals nothing)."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name

    def __repr__(self) -> str:
        return f"<a {self.type_name} object>"

    def __eq__(self, other: object) -> bool:
        return False

    __hash__ = None  # type: ignore[assignment]


class StudentProxy:
    """`student.fn(*args)` runs `solution.fn` in the sandbox; `student.code(...)` builds remote objects."""

    def __init__(self, session: StudentSession) -> None:
        self._session = session

    def code(self, src: str, name: str | None = None, **env: Any) -> RemoteCode:
        """An object made in the student process from `src` (expression, or block binding `name`)."""
        return RemoteCode(src, name, env)

    def __getattr__(self, fn: str) -> Any:
        if fn.startswith("_"):
            raise AttributeError(fn)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._call(fn, args, kwargs)

        call.__name__ = fn
        return call

    def _call(self, fn: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        encoder = _Encoder()
        wire_args = [encoder.encode(a) for a in args]
        wire_kwargs = {k: encoder.encode(v) for k, v in kwargs.items()}
        reply = self._session.call(fn, wire_args, wire_kwargs)
        try:
            value = _decode(reply.get("value"), encoder.refs)
            _write_back(reply.get("writeback", []), encoder.refs)
        except (wire.WireError, TypeError, ValueError, KeyError, RuntimeError) as exc:
            raise StudentError(f"{fn}() returned something that cannot be checked: {exc}", "protocol") from None
        return value


class _Encoder:
    """Encodes arguments, numbering every tensor, list and dict so the reply can refer back to them."""

    def __init__(self) -> None:
        self.refs: dict[int, Any] = {}
        self._ids: dict[int, int] = {}

    def _ref(self, obj: Any) -> int:
        key = id(obj)
        if key not in self._ids:
            self._ids[key] = len(self.refs)
            self.refs[self._ids[key]] = obj
        return self._ids[key]

    def encode(self, value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return wire.tensor_to_wire(value, ref=self._ref(value))
        if isinstance(value, RemoteCode):
            # No refs inside code: whatever the student does to these values must never be written back into
            # the test's own objects (module-level weights, say).
            env = {k: _Encoder().encode(v) for k, v in value.env.items()}
            return {"__code__": {"src": value.src, "name": value.name, "env": env}}
        if value is None or isinstance(value, (bool, int, str)):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else {"__float__": repr(value)}
        if isinstance(value, list):
            return {"__list__": [self.encode(v) for v in value], "ref": self._ref(value)}
        if isinstance(value, tuple):
            return {"__tuple__": [self.encode(v) for v in value]}
        if isinstance(value, dict):
            return {"__dict__": {str(k): self.encode(v) for k, v in value.items()}, "ref": self._ref(value)}
        raise TypeError(f"a test passed a {type(value).__name__}, which cannot be sent to the student")


def _rebuild_tensor(spec: dict[str, Any]) -> torch.Tensor:
    tensor = wire.tensor_from_wire(spec)
    if spec.get("requires_grad") and (tensor.is_floating_point() or tensor.is_complex()):
        if spec.get("is_leaf", True):
            tensor.requires_grad_(True)
            if isinstance(spec.get("grad"), dict):
                tensor.grad = wire.tensor_from_wire(spec["grad"]["__tensor__"])
        else:
            # Mirror a tensor that is still attached to a graph: a non-leaf with a grad_fn of its own.
            tensor = tensor.requires_grad_(True).clone()
    elif isinstance(spec.get("grad"), dict):
        tensor.grad = wire.tensor_from_wire(spec["grad"]["__tensor__"])
    tensor._remote_grad_fn = spec.get("grad_fn")  # type: ignore[attr-defined]
    return tensor


def _decode(value: Any, refs: dict[int, Any]) -> Any:
    if isinstance(value, list):
        return [_decode(v, refs) for v in value]
    if not isinstance(value, dict):
        return value
    if wire.is_tensor_spec(value):
        spec = value["__tensor__"]
        ref = spec.get("ref")
        if isinstance(ref, int) and isinstance(refs.get(ref), torch.Tensor):
            return refs[ref]  # the student returned the caller's own tensor
        return _rebuild_tensor(spec)
    if "__ref__" in value:
        ref = value["__ref__"]
        if not isinstance(ref, int) or ref not in refs:
            raise wire.WireError("reply refers to an unknown argument")
        return refs[ref]
    if "__list__" in value:
        return [_decode(v, refs) for v in value["__list__"]]
    if "__tuple__" in value:
        return tuple(_decode(v, refs) for v in value["__tuple__"])
    if "__dict__" in value:
        return {str(k): _decode(v, refs) for k, v in value["__dict__"].items()}
    if "__float__" in value:
        return float(value["__float__"])
    if "__unsupported__" in value:
        return UnsupportedValue(str(value["__unsupported__"]))
    raise wire.WireError("unknown value in reply")


def _write_back(entries: list[Any], refs: dict[int, Any]) -> None:
    """Give the judge's arguments the state the student left them in (tensors first, then containers)."""
    by_ref = {e["ref"]: e["value"] for e in entries if isinstance(e, dict) and e.get("ref") in refs}
    for ref, value in by_ref.items():
        target = refs[ref]
        if isinstance(target, torch.Tensor) and wire.is_tensor_spec(value):
            _apply_tensor_state(target, value["__tensor__"])
    for ref, value in by_ref.items():
        target = refs[ref]
        if isinstance(target, list) and isinstance(value, dict) and "__list__" in value:
            target[:] = [_decode(v, refs) for v in value["__list__"]]
        elif isinstance(target, dict) and isinstance(value, dict) and "__dict__" in value:
            new = {str(k): _decode(v, refs) for k, v in value["__dict__"].items()}
            target.clear()
            target.update(new)


def _apply_tensor_state(target: torch.Tensor, spec: dict[str, Any]) -> None:
    new = wire.tensor_from_wire(spec)
    with torch.no_grad():
        if new.shape == target.shape and new.dtype == target.dtype:
            if not torch.equal(new.to(target.device), target):
                target.copy_(new.to(target.device))
        else:
            target.data = new.to(target.device)
    if target.is_leaf:
        wants = bool(spec.get("requires_grad"))
        if wants != target.requires_grad and (target.is_floating_point() or target.is_complex()):
            target.requires_grad_(wants)
        grad = spec.get("grad")
        target.grad = wire.tensor_from_wire(grad["__tensor__"]).to(target.device) if isinstance(grad, dict) else None
