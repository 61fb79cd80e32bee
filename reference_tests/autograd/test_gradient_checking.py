"""Deliverable gradient_checking: ``numerical_gradient`` and ``check_gradient``.

Checked: central differences against analytic values (for a cubic, the central difference with step eps is
exactly 3x² + eps², so a one-sided difference or an ignored eps shows), every element of a matrix in its own
place, the device/dtype rule and an untouched caller's tensor; check_gradient accepts correct gradients,
rejects a hand-written autograd.Function with a wrong backward, and honours its tolerances.

Every assertion carries its own message, which is what the student reads; PYTEST_DONT_REWRITE keeps pytest's
assertion introspection (object reprs, memory addresses) out of it.
"""

import pytest
import torch

pytestmark = pytest.mark.deliverable("gradient_checking")

F64 = torch.float64

# A hand-written autograd.Function for x², whose backward multiplies by SLOPE·x (correct when SLOPE = 2).
SQUARE = """
class Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * SLOPE * x

f = lambda x: Square.apply(x).sum()
"""


def _estimate(result, x, call, *, check_dtype=False):
    """Check that `call` returned a tensor shaped like x (and its dtype and device); return it as float64."""
    assert isinstance(result, torch.Tensor), f"{call} must return a torch.Tensor, got {type(result).__name__}"
    assert result.shape == x.shape, (
        f"{call} must return a tensor shaped like x {list(x.shape)}, got shape {list(result.shape)}"
    )
    if check_dtype:
        assert result.dtype == x.dtype and result.device.type == x.device.type, (
            f"wrong device/dtype: {call} of a {x.dtype} x on {x.device} must return {x.dtype} on {x.device}, "
            f"got {result.dtype} on {result.device}: build the estimate with torch.zeros_like(x)"
        )
    return result.detach().to("cpu", F64)


def _bool(result, call):
    """Check that `call` returned a Python bool."""
    assert isinstance(result, bool), (
        f"{call} must return a Python bool (True or False), got {type(result).__name__}: use bool(...)"
    )
    return result


@pytest.mark.points(3)
def test_numerical_gradient_of_a_vector_function(student):
    """Does numerical_gradient() estimate the gradient of sum(x²) (2x) for every element?"""
    x = torch.tensor([1.0, -2.0, 3.0], dtype=F64)
    got = _estimate(
        student.numerical_gradient(student.code("lambda x: (x**2).sum()"), x.clone()), x, "numerical_gradient"
    )
    assert torch.allclose(got, 2 * x, rtol=1e-5, atol=1e-5), (
        f"numerical_gradient of sum(x²) at [1, -2, 3] should be close to 2x = [2, -4, 6], got {got.tolist()}"
    )


@pytest.mark.points(4)
def test_numerical_gradient_uses_central_differences(student):
    """With eps = 1e-3, is the estimate for sum(x³) exactly the central difference 3x² + eps²?"""
    eps = 1e-3
    x = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    f = student.code("lambda x: (x**3).sum()")
    got = _estimate(student.numerical_gradient(f, x.clone(), eps=eps), x, "numerical_gradient(f, x, eps=1e-3)")
    central = 3 * x**2 + eps**2  # ((x+h)³ - (x-h)³) / 2h, exactly
    forward = 3 * x**2 + 3 * x * eps + eps**2  # ((x+h)³ - x³) / h
    backward = 3 * x**2 - 3 * x * eps + eps**2  # (x³ - (x-h)³) / h

    def matches(candidate):
        return torch.allclose(got, candidate, rtol=0, atol=1e-9)

    message = (
        f"for sum(x³) at {x.tolist()} with eps = 1e-3 the central difference "
        f"(f(x + eps·eᵢ) - f(x - eps·eᵢ)) / (2·eps) is {central.tolist()}, got {got.tolist()}"
    )
    if matches(forward) or matches(backward):
        message = (
            f"one-sided differences: for sum(x³) with eps = 1e-3 you returned {got.tolist()}, which is "
            "(f(x + eps·eᵢ) - f(x)) / eps (or its backward twin), off by O(eps); use the central "
            "difference (f(x + eps·eᵢ) - f(x - eps·eᵢ)) / (2·eps), accurate to O(eps²)"
        )
    elif matches(3 * x**2):
        message = (
            "for sum(x³) with eps = 1e-3 the central difference is 3x² + eps², but you returned the "
            "exact derivative 3x²: use the eps you are given, and finite differences, not autograd"
        )
    assert matches(central), message


@pytest.mark.points(3)
def test_numerical_gradient_of_a_matrix_function(student):
    """For a 2x3 x, is every element's estimate in its own place?"""
    w = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]], dtype=F64)
    x = torch.tensor([[0.1, 0.2, 0.3], [-0.4, 0.5, 1.6]], dtype=F64)
    f = student.code("lambda x: (w * torch.sin(x)).sum() + x[0, 0] * x[1, 2]", w=w)
    expected = w * torch.cos(x)
    expected[0, 0] += x[1, 2]
    expected[1, 2] += x[0, 0]
    got = _estimate(student.numerical_gradient(f, x.clone()), x, "numerical_gradient(f, x) for a 2x3 x")
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-5), (
        f"numerical_gradient of sum(w·sin x) + x[0,0]·x[1,2] should be {expected.tolist()}, "
        f"got {got.tolist()}: "
        "perturb one element at a time and store each estimate at that element's position"
    )


@pytest.mark.points(3)
def test_numerical_gradient_leaves_x_alone_and_follows_its_device(student, devices):
    """Is the caller's x unchanged, and the estimate on x's device with x's dtype?"""
    f = student.code("lambda x: (x**4).sum() / 4")  # gradient: x³
    for device in devices:
        x = torch.tensor([[0.3, -1.2], [2.0, 0.7]], dtype=F64, device=device)
        before = x.clone()
        got = _estimate(student.numerical_gradient(f, x), x, f"numerical_gradient(f, x) on {device}", check_dtype=True)
        assert torch.equal(x, before), (
            f"caller's tensor mutated: numerical_gradient() changed x from {before.tolist()} "
            f"to {x.tolist()}; "
            "perturb a copy (x.detach().clone()), not x itself"
        )
        assert not x.requires_grad and x.grad is None, (
            "caller's tensor mutated: numerical_gradient() left requires_grad / a .grad on x"
        )
        expected = before.to("cpu") ** 3
        assert torch.allclose(got, expected, rtol=1e-5, atol=1e-5), (
            f"numerical_gradient of sum(x⁴)/4 should be close to x³ = {expected.tolist()}, "
            f"got {got.tolist()} ({device})"
        )


@pytest.mark.points(2)
def test_check_gradient_accepts_correct_gradients(student):
    """Does check_gradient() return True when autograd's gradient is right?"""
    x = torch.tensor([0.1, -0.7, 1.3], dtype=F64)
    f = student.code("lambda x: (torch.exp(x) * torch.sin(x)).sum()")
    assert _bool(student.check_gradient(f, x), "check_gradient(f, x)") is True, (
        "check_gradient() returned False for sum(eˣ·sin x), whose autograd gradient is correct"
    )
    good = student.code(SQUARE, name="f", SLOPE=2.0)
    assert _bool(student.check_gradient(good, x), "check_gradient(f, x)") is True, (
        "check_gradient() returned False for an autograd.Function x² whose backward (2x) is correct"
    )


@pytest.mark.points(3)
def test_check_gradient_rejects_a_wrong_backward(student):
    """Does check_gradient() return False for autograd.Functions whose backward is wrong?"""
    x = torch.tensor([0.1, -0.7, 1.3], dtype=F64)
    for slope, shown in ((1.0, "x instead of 2x"), (-2.0, "-2x instead of 2x")):
        bad = student.code(SQUARE, name="f", SLOPE=slope)
        assert _bool(student.check_gradient(bad, x), "check_gradient(f, x)") is False, (
            f"check_gradient() returned True for an autograd.Function x² whose backward is wrong ({shown}): "
            "compare autograd's gradient (f(x).backward() on a copy of x) with numerical_gradient(f, x)"
        )


@pytest.mark.points(2)
def test_check_gradient_honours_tolerances(student):
    """Is a gradient off by 0.01 % accepted with the default tolerances and rejected with tight ones?"""
    x = torch.tensor([0.1, -0.7, 1.3], dtype=F64)
    slightly_off = student.code(SQUARE, name="f", SLOPE=2.0 * (1 + 1e-4))
    assert _bool(student.check_gradient(slightly_off, x), "check_gradient(f, x)") is True, (
        "check_gradient() rejected a gradient off by 0.01 %, within the default rtol = 1e-3"
    )
    tight = student.check_gradient(slightly_off, x, atol=1e-9, rtol=1e-6)
    assert _bool(tight, "check_gradient(f, x, atol=1e-9, rtol=1e-6)") is False, (
        "check_gradient(f, x, atol=1e-9, rtol=1e-6) accepted a gradient off by 0.01 %: "
        "use the atol and rtol you are given"
    )
