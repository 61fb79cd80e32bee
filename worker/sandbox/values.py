"""Values across the sandbox boundary, student side: the judge's arguments rebuilt, the results turned back.

Only plain data crosses: JSON values, tensors as raw bytes (`wire`), lists, tuples and dicts (with references,
so an argument the function changes in place can be written back), and the judge's own helper code (test
helpers such as a function to differentiate), compiled here. Nothing is unpickled. Runs inside the sandbox.
"""

from __future__ import annotations

import math
import numbers
from functools import lru_cache
from types import CodeType
from typing import Any

import wire


@lru_cache(maxsize=512)
def _compiled(src: str, mode: str) -> CodeType:
    """The judge's helper code, compiled once per process (a test's process serves the next test of its
    deliverable, whose helpers are often the same); code objects are immutable, each call gets a new scope."""
    return compile(src, "<test helper>", mode)


def decode(value: Any, refs: dict[int, Any]) -> Any:
    """A wire value as the student's function receives it; tensors sent with a ref are recorded in `refs`."""
    import torch

    if isinstance(value, list):
        return [decode(v, refs) for v in value]
    if not isinstance(value, dict):
        return value
    if wire.is_tensor_spec(value):
        spec = value["__tensor__"]
        # Never moved to the CPU: the judge sends a GPU tensor only where it was told this sandbox has the GPU, and a
        # GPU test graded on the CPU would cost the student its points without a word of why.
        tensor = wire.tensor_from_wire(spec, device_fallback=None)
        if spec.get("requires_grad") and (tensor.is_floating_point() or tensor.is_complex()):
            tensor.requires_grad_(bool(spec.get("requires_grad")))
        if spec.get("grad") is not None:
            tensor.grad = wire.tensor_from_wire(spec["grad"]["__tensor__"], device_fallback=None)
        if spec.get("ref") is not None:
            refs[int(spec["ref"])] = tensor
        return tensor
    if "__list__" in value:
        items = [decode(v, refs) for v in value["__list__"]]
        if value.get("ref") is not None:
            refs[int(value["ref"])] = items
        return items
    if "__tuple__" in value:
        return tuple(decode(v, refs) for v in value["__tuple__"])
    if "__dict__" in value:
        items_d = {str(k): decode(v, refs) for k, v in value["__dict__"].items()}
        if value.get("ref") is not None:
            refs[int(value["ref"])] = items_d
        return items_d
    if "__float__" in value:
        return float(value["__float__"])
    if "__code__" in value:
        code = value["__code__"]
        scope: dict[str, Any] = {"torch": torch, "nn": torch.nn, "F": torch.nn.functional, "math": math}
        scope.update({str(k): decode(v, refs) for k, v in code.get("env", {}).items()})
        if code.get("name"):
            exec(_compiled(str(code["src"]), "exec"), scope)  # noqa: S102  (the judge's own code)
            return scope[code["name"]]
        return eval(_compiled(str(code["src"]), "eval"), scope)  # noqa: S307
    raise wire.WireError(f"unknown value {sorted(value)[:3]}")

def encode(value: Any, ids: dict[int, int], top: bool = False) -> Any:
    """A returned value as wire data; objects the judge sent (by id) go back as references."""
    import torch

    # By the value's real type throughout: isinstance() believes a `__class__` property, and an object that only
    # claims to be a bool, a number or a tensor must go back as unsupported, not reach the encoder.
    kind = type(value)
    if issubclass(kind, torch.Tensor):
        return wire.tensor_to_wire(value, ref=ids.get(id(value)))
    if value is None or kind is bool or issubclass(kind, str):
        return value
    if issubclass(kind, numbers.Integral):
        return int(value)
    if issubclass(kind, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else {"__float__": repr(number)}
    if not top and id(value) in ids:
        return {"__ref__": ids[id(value)]}
    if issubclass(kind, list):
        return {"__list__": [encode(v, ids) for v in value]}
    if issubclass(kind, tuple):
        return {"__tuple__": [encode(v, ids) for v in value]}
    if issubclass(kind, dict):
        return {"__dict__": {str(k): encode(v, ids) for k, v in value.items()}}
    return {"__unsupported__": kind.__name__}
