"""The judge ⇄ sandbox wire format: values survive the trip, and malformed input is refused."""

from __future__ import annotations

import struct

import pytest
import torch

from worker.sandbox import wire


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int64,
                                   torch.bool, torch.complex64, torch.uint8])
@pytest.mark.parametrize("shape", [(), (0,), (3,), (2, 3, 4)])
def test_tensor_round_trip(dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    """Does a tensor of every supported dtype and shape come back with the same values, dtype and shape?"""
    source = (torch.arange(int(torch.tensor(shape).prod().item()) if shape else 1) % 7).reshape(shape).to(dtype)
    back = wire.tensor_from_wire(wire.tensor_to_wire(source)["__tensor__"])
    assert back.dtype == dtype and back.shape == source.shape
    assert torch.equal(back, source)


def test_tensor_metadata_travels() -> None:
    """Are requires_grad, leaf-ness, the grad_fn name and .grad described?"""
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    (x * x).sum().backward()
    y = x * 2
    leaf = wire.tensor_to_wire(x, ref=3)["__tensor__"]
    assert leaf["requires_grad"] and leaf["is_leaf"] and leaf["ref"] == 3
    assert torch.equal(wire.tensor_from_wire(leaf["grad"]["__tensor__"]), torch.tensor([2.0, 4.0]))
    inner = wire.tensor_to_wire(y)["__tensor__"]
    assert not inner["is_leaf"] and inner["grad_fn"] == "MulBackward0"


def _spec(**overrides: object) -> dict:
    spec = wire.tensor_to_wire(torch.ones(2))["__tensor__"]
    spec.update(overrides)
    return spec


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"dtype": "object"}, "unknown dtype"),
        ({"shape": [3]}, "bytes"),
        ({"shape": [-1]}, "shape"),
        ({"shape": "2"}, "shape"),
        ({"data": "not base64!"}, "base64"),
        ({"device": "meta"}, "device"),
        ({"device": 7}, "device"),
    ],
)
def test_malformed_tensor_is_refused(overrides: dict, reason: str) -> None:
    """Is a tensor description that lies about its size, dtype or device refused with a reason?"""
    with pytest.raises(wire.WireError, match=reason):
        wire.tensor_from_wire(_spec(**overrides))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a process that cannot use CUDA")
def test_a_gpu_tensor_where_no_gpu_is_usable_is_refused_only_where_asked() -> None:
    """Does a CUDA tensor sent to a process that cannot use CUDA raise DeviceUnavailable when no fallback is given
    (the sandbox's side: a GPU test must never be graded on the CPU), and land on the CPU only where one is (the
    judge's side, for what the student's code claims)?"""
    with pytest.raises(wire.DeviceUnavailable, match="cuda:0"):
        wire.tensor_from_wire(_spec(device="cuda:0"), device_fallback=None)
    assert wire.tensor_from_wire(_spec(device="cuda:0")).device.type == "cpu"


def test_frames_round_trip_in_pieces() -> None:
    """Does the frame reader reassemble frames that arrive a byte at a time, several per chunk?"""
    data = wire.encode_frame({"a": 1}) + wire.encode_frame({"b": [1, 2]})
    reader = wire.FrameReader()
    frames = []
    for i in range(len(data)):
        reader.feed(data[i : i + 1])
        while (frame := reader.next_frame()) is not None:
            frames.append(frame)
    assert frames == [{"a": 1}, {"b": [1, 2]}]


@pytest.mark.parametrize(
    "payload",
    [struct.pack(">I", 3) + b"\xff\xfe\xfd", struct.pack(">I", 2) + b"[]", struct.pack(">I", 4) + b"nope"],
)
def test_bad_frames_are_refused(payload: bytes) -> None:
    """Are frames that are not JSON objects refused rather than half-parsed?"""
    reader = wire.FrameReader()
    reader.feed(payload)
    with pytest.raises(wire.WireError):
        reader.next_frame()


def test_oversized_frame_is_refused_before_buffering() -> None:
    """Does a frame header announcing more than the limit fail at once, before the body is buffered?"""
    reader = wire.FrameReader()
    with pytest.raises(wire.WireError, match="size limit"):
        reader.feed(struct.pack(">I", wire.MAX_FRAME + 1))
