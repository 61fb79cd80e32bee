"""Frames and values exchanged between the judge and the student server: JSON and raw tensor bytes only.

This module is copied into the sandbox as it is, so it imports nothing but the standard library and torch.
Both sides treat what they receive as untrusted: sizes are capped and every field is checked.
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

MAX_FRAME = 32 * 1024 * 1024
_HEADER = struct.Struct(">I")

DTYPES = {
    "float16": "float16", "bfloat16": "bfloat16", "float32": "float32", "float64": "float64",
    "complex64": "complex64", "complex128": "complex128", "uint8": "uint8", "int8": "int8",
    "int16": "int16", "int32": "int32", "int64": "int64", "bool": "bool",
}


class WireError(ValueError):
    """A frame or value that breaks the protocol."""


class DeviceUnavailable(WireError):
    """A well-formed tensor for a device this process cannot use."""


def encode_frame(message: dict[str, Any]) -> bytes:
    """One frame: a 4-byte big-endian length, then UTF-8 JSON."""
    body = json.dumps(message, allow_nan=True, separators=(",", ":")).encode()
    if len(body) > MAX_FRAME:
        raise WireError(f"frame of {len(body)} bytes is over the {MAX_FRAME}-byte limit")
    return _HEADER.pack(len(body)) + body


class FrameReader:
    """Incremental decoder: feed bytes, take whole frames."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        """Add received bytes."""
        self._buffer += data
        if len(self._buffer) >= 4 and _HEADER.unpack_from(self._buffer)[0] > MAX_FRAME:
            raise WireError("frame over the size limit")

    def next_frame(self) -> dict[str, Any] | None:
        """The next complete frame, or None until more bytes arrive."""
        if len(self._buffer) < 4:
            return None
        (length,) = _HEADER.unpack_from(self._buffer)
        if len(self._buffer) < 4 + length:
            return None
        body = bytes(self._buffer[4 : 4 + length])
        del self._buffer[: 4 + length]
        try:
            message = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise WireError(f"frame is not JSON: {exc}") from exc
        if not isinstance(message, dict):
            raise WireError("frame is not a JSON object")
        return message


def tensor_to_wire(t: Any, ref: int | None = None, with_grad: bool = True) -> dict[str, Any]:
    """Describe a tensor as plain data (values as raw bytes, base64)."""
    import torch

    dtype = str(t.dtype).removeprefix("torch.")
    if dtype not in DTYPES:
        raise WireError(f"tensors of dtype {dtype} cannot be exchanged")
    data = t.detach().to("cpu").contiguous()
    raw = data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b""
    grad = getattr(t, "grad", None) if t.is_leaf else None
    return {
        "__tensor__": {
            "dtype": dtype,
            "shape": list(t.shape),
            "device": str(t.device),
            "data": base64.b64encode(raw).decode("ascii"),
            "requires_grad": bool(t.requires_grad),
            "is_leaf": bool(t.is_leaf),
            "grad_fn": type(t.grad_fn).__name__ if t.grad_fn is not None else None,
            "grad": tensor_to_wire(grad, with_grad=False) if (with_grad and grad is not None) else None,
            "ref": ref,
        }
    }


def tensor_from_wire(spec: Any, device_fallback: str | None = "cpu") -> Any:
    """Rebuild a detached tensor from its description; raise WireError on anything malformed. A tensor for a device
    this process cannot use goes to `device_fallback`, or raises DeviceUnavailable when that is None."""
    import torch

    if not isinstance(spec, dict):
        raise WireError("tensor description is not an object")
    dtype_name = spec.get("dtype")
    if dtype_name not in DTYPES:
        raise WireError(f"unknown dtype {dtype_name!r}")
    dtype = getattr(torch, DTYPES[dtype_name])
    shape = spec.get("shape")
    if not isinstance(shape, list) or not all(isinstance(n, int) and 0 <= n < 2**31 for n in shape):
        raise WireError("bad tensor shape")
    numel = 1
    for n in shape:
        numel *= n
    try:
        raw = base64.b64decode(spec.get("data", ""), validate=True)
    except (ValueError, TypeError) as exc:
        raise WireError("tensor data is not base64") from exc
    itemsize = torch.empty((), dtype=dtype).element_size()
    if len(raw) != numel * itemsize:
        raise WireError(f"tensor data has {len(raw)} bytes, shape {shape} needs {numel * itemsize}")
    if numel:
        flat = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype)
        tensor = flat.reshape(shape).clone()
    else:
        tensor = torch.empty(shape, dtype=dtype)
    device = spec.get("device", "cpu")
    if not isinstance(device, str) or not (device == "cpu" or device.startswith("cuda")):
        raise WireError(f"unsupported device {device!r}")
    if device != "cpu":
        try:
            tensor = tensor.to(device)
        except (RuntimeError, AssertionError) as exc:
            if device_fallback is None:
                raise DeviceUnavailable(f"cannot use {device}: {exc}") from exc
            tensor = tensor.to(device_fallback)
    return tensor


def is_tensor_spec(value: Any) -> bool:
    """True for an encoded tensor."""
    return isinstance(value, dict) and len(value) == 1 and "__tensor__" in value
