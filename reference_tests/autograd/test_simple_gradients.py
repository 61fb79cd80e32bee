"""Deliverable simple_gradients: ``derivative(f, x)`` computes f'(x) with autograd.

Checked: the seed's examples, other functions and points, points drawn at random (hidden until after the
due date, so that answers hard-coded for the examples lose them), the device/dtype rule, and that the
caller's tensor is left alone. Expected values are analytic derivatives.

Every assertion carries its own message, which is what the student reads; PYTEST_DONT_REWRITE keeps pytest's
assertion introspection (object reprs, memory addresses) out of it.
"""

import math
import random

import pytest
import torch

pytestmark = pytest.mark.deliverable("simple_gradients")

FLOAT32 = {"rel": 1e-5, "abs": 1e-5}  # float32 arithmetic in the student's function
FLOAT64 = {"rel": 1e-10, "abs": 1e-12}


def _scalar(result, call):
    """Check that `call` returned a 0-dim tensor; return its value as a Python float."""
    assert isinstance(result, torch.Tensor), f"{call} must return a torch.Tensor, got {type(result).__name__}"
    assert result.dim() == 0, f"{call} must return a 0-dim tensor (shape []), got shape {list(result.shape)}"
    return result.item()


@pytest.mark.points(3)
def test_seed_example_quadratic(student):
    """Does derivative() give d/dx (x² + 3x + 1) = 7 at x = 2?"""
    f = student.code("lambda x: x**2 + 3*x + 1")
    d = _scalar(student.derivative(f, 2.0), "derivative(f, 2.0)")
    assert d == pytest.approx(7.0, **FLOAT32), f"d/dx (x² + 3x + 1) at x = 2 is 2·2 + 3 = 7, got {d}"


@pytest.mark.points(3)
def test_seed_example_cubic(student):
    """Does derivative() give d/dx (x³ + 2x) = 14 at x = 2?"""
    f = student.code("lambda x: x**3 + 2*x")
    d = _scalar(student.derivative(f, 2.0), "derivative(f, 2.0)")
    assert d == pytest.approx(14.0, **FLOAT32), f"d/dx (x³ + 2x) at x = 2 is 3·2² + 2 = 14, got {d}"


OTHER_CASES = [
    # (source of f, shown as, x, f'(x))
    ("lambda x: x**2 + 3*x + 1", "x² + 3x + 1", -4.0, -5.0),
    ("lambda x: x**3 + 2*x", "x³ + 2x", 0.5, 2.75),
    (
        "lambda x: torch.sin(x) * torch.exp(x)",
        "sin(x)·eˣ",
        0.3,
        math.exp(0.3) * (math.sin(0.3) + math.cos(0.3)),
    ),
    ("lambda x: 1 / (1 + x**2)", "1 / (1 + x²)", 2.0, -4.0 / 25.0),
]


@pytest.mark.points(4)
def test_other_functions_and_points(student):
    """Does derivative() work for other functions and points than the examples?"""
    for src, shown, x, expected in OTHER_CASES:
        d = _scalar(student.derivative(student.code(src), x), f"derivative(f, {x})")
        assert d == pytest.approx(expected, **FLOAT32), (
            f"for f(x) = {shown}, f'({x}) should be {expected:.6g}, got {d:.6g}: "
            "compute the derivative with autograd for whatever f and x you are given"
        )


@pytest.mark.points(4)
@pytest.mark.visibility("after_due_date")
def test_random_polynomials_and_points(student):
    """Does derivative() work at points and coefficients drawn at random (no hard-coded answers)?"""
    rng = random.Random(20240917)
    a, b, c = (round(rng.uniform(-3.0, 3.0), 3) for _ in range(3))
    f = student.code("lambda x: a * x**3 + b * x**2 + c * torch.sin(x)", a=a, b=b, c=c)
    for x in (2.0, round(rng.uniform(-2.0, 2.0), 4), round(rng.uniform(-2.0, 2.0), 4)):
        expected = 3 * a * x**2 + 2 * b * x + c * math.cos(x)
        d = _scalar(student.derivative(f, x), f"derivative(f, {x})")
        assert d == pytest.approx(expected, rel=1e-4, abs=1e-4), (
            f"d/dx ({a}·x³ + {b}·x² + {c}·sin x) at x = {x} should be {expected:.6g}, got {d:.6g}: "
            "answers must come from autograd, not from the examples"
        )


@pytest.mark.points(3)
def test_result_follows_device_and_dtype_of_x(student, devices):
    """Is the result a tensor on x's device with x's dtype (float32 on the CPU for a Python float)?"""
    f = student.code("lambda x: x**3 - 2*x")  # f'(1.5) = 3·1.5² - 2 = 4.75
    d = student.derivative(f, 1.5)
    _scalar(d, "derivative(f, 1.5)")
    assert d.dtype == torch.float32 and d.device.type == "cpu", (
        f"for a Python float x the result must be a CPU float32 tensor, got {d.dtype} on {d.device}"
    )
    for device in devices:
        for dtype in (torch.float32, torch.float64):
            x = torch.tensor(1.5, dtype=dtype, device=device)
            d = student.derivative(f, x)
            value = _scalar(d, f"derivative(f, x) for a {dtype} x on {device}")
            assert d.dtype == dtype and d.device.type == x.device.type, (
                f"wrong device/dtype: for a {dtype} x on {device} the result must be {dtype} on {device}, "
                f"got {d.dtype} on {d.device}. Build the leaf from x itself: "
                "x.detach().clone().requires_grad_()"
            )
            tolerance = FLOAT64 if dtype == torch.float64 else FLOAT32
            assert value == pytest.approx(4.75, **tolerance), (
                f"d/dx (x³ - 2x) at x = 1.5 is 4.75, got {value} for a {dtype} x on {device}"
            )


@pytest.mark.points(3)
def test_caller_tensor_is_left_alone(student):
    """Does derivative() leave the caller's x as it was (value, requires_grad, .grad)?"""
    f = student.code("lambda x: x * torch.sin(x)")
    expected = math.sin(0.8) + 0.8 * math.cos(0.8)
    advice = "work on a copy: leaf = x.detach().clone().requires_grad_()"

    x = torch.tensor(0.8, dtype=torch.float64)
    value = _scalar(student.derivative(f, x), "derivative(f, x)")
    assert not x.requires_grad, f"caller's tensor mutated: derivative() turned on requires_grad of x; {advice}"
    assert x.grad is None, f"caller's tensor mutated: derivative() left a gradient in x.grad; {advice}"
    assert x.item() == 0.8, f"caller's tensor mutated: x changed from 0.8 to {x.item()}; {advice}"
    assert value == pytest.approx(expected, **FLOAT32), f"d/dx (x·sin x) at 0.8 is {expected:.6g}, got {value}"

    y = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    value = _scalar(student.derivative(f, y), "derivative(f, x)")
    assert y.grad is None, (
        f"caller's tensor mutated: x already required grad and derivative() left a gradient in its .grad; {advice}"
    )
    assert y.requires_grad, f"caller's tensor mutated: derivative() turned off requires_grad of x; {advice}"
    assert value == pytest.approx(expected, **FLOAT32), f"d/dx (x·sin x) at 0.8 is {expected:.6g}, got {value}"
