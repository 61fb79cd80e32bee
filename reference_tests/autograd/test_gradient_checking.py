"""Deliverable gradient_checking: ``numerical_gradient`` and ``check_gradient``.

Checked: central differences against analytic values (for a cubic, the central difference with step eps is
exactly 3x² + eps², so a one-sided difference or an ignored eps shows; at eps = 0.25 float32 arithmetic is
exact too, which tells lost precision from a wrong formula), an f that returns a Python float, every element
of a matrix in its own place, the device/dtype rule and an untouched caller's tensor; check_gradient accepts
correct gradients (on every device) and leaves the caller's x alone, rejects a hand-written autograd.Function
whose backward is wrong everywhere or in one later element only, and honours its tolerances, including at a
large magnitude where only rtol decides (atol and rtol swapped shows there).

Every assertion carries its own message, which is what the student reads; PYTEST_DONT_REWRITE keeps pytest's
assertion introspection (object reprs, memory addresses) out of it.
"""

import pytest
import torch

pytestmark = pytest.mark.deliverable("gradient_checking")

F64 = torch.float64

# A hand-written autograd.Function for x², whose backward multiplies by SLOPE·x (correct when SLOPE = 2). SLOPE may
# be a tensor, to get one element wrong and the others right.
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


def _precision_hint(student, got_dtype):
    """Why an estimate is off when the formula is right: float32. '' when the formula itself is wrong.

    At eps = 0.25 and x = [1, -2, 0.5] every number in the central difference of sum(x³) is exact in float32,
    so an estimate that is exact there and off at a small eps lost precision, it did not use a wrong formula.
    """
    x = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    try:
        coarse = student.numerical_gradient(student.code("lambda x: (x**3).sum()"), x.clone(), eps=0.25)
    except AssertionError:  # the student's code raised: nothing to tell from it
        return ""
    if not isinstance(coarse, torch.Tensor) or coarse.shape != x.shape:
        return ""
    if not torch.allclose(coarse.detach().to("cpu", F64), 3 * x**2 + 0.25**2, rtol=0, atol=1e-12):
        return ""
    returned = f" (and returned {got_dtype})" if got_dtype != F64 else ""
    return (
        f"; lost precision: your central difference is exact at eps = 0.25, so the formula is right, but the "
        f"arithmetic was done in float32{returned}, whose rounding error, divided by 2·eps, swamps the estimate "
        "at a small eps: keep x's dtype (float64) throughout, perturb x.detach().clone() (not .float()) and "
        "build the estimate with torch.zeros_like(x)"
    )


def _estimate_hint(student, f, x, expected):
    """Why check_gradient() rejected a correct gradient when its numerical_gradient is to blame ('' otherwise)."""
    try:
        result = student.numerical_gradient(f, x.clone())
    except AssertionError as exc:
        return f"; it relies on numerical_gradient(f, x), which raised: {str(exc).splitlines()[0]}"
    if not isinstance(result, torch.Tensor) or result.shape != x.shape:
        return ""
    got = result.detach().to("cpu", F64)
    if torch.allclose(got, expected, rtol=1e-6, atol=1e-8):
        return ""
    return (
        f"; the cause is numerical_gradient(f, x), which is off for this f: {got.tolist()} instead of "
        f"{expected.tolist()}" + _precision_hint(student, result.dtype)
    )


def _checked(student, f, x, call="check_gradient(f, x)", *, hands_off=False, **tolerances):
    """check_gradient(f, x) on a copy of x (so no call sees what an earlier one left); check it returned a bool.

    With hands_off, also check that the copy came back untouched (one test asks that; the others must not lose
    points to the same mistake).
    """
    x = x.clone()
    result = student.check_gradient(f, x, **tolerances)
    assert not hands_off or (not x.requires_grad and x.grad is None), (
        f"caller's tensor mutated: {call} left requires_grad={x.requires_grad} and "
        f"{'a' if x.grad is not None else 'no'} .grad on the caller's x, so the next call's autograd gradient "
        "adds to it and a correct gradient looks wrong; differentiate a copy: "
        "leaf = x.detach().clone().requires_grad_()"
    )
    return _bool(result, call)


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
    result = student.numerical_gradient(student.code("lambda x: (x**2).sum()"), x.clone())
    got = _estimate(result, x, "numerical_gradient")
    assert torch.allclose(got, 2 * x, rtol=1e-5, atol=1e-5), (
        f"numerical_gradient of sum(x²) at [1, -2, 3] should be close to 2x = [2, -4, 6], got {got.tolist()}"
        + _precision_hint(student, result.dtype)
    )
    # The docstring allows an f that returns a Python float: no .item(), .detach() or backward() on its result.
    as_float = student.code("lambda x: float((x**2).sum())")
    try:
        result = student.numerical_gradient(as_float, x.clone())
    except AssertionError as exc:
        raise AssertionError(
            "numerical_gradient() failed for an f that returns a Python float (the docstring allows it: "
            "f(x) may be a 0-dim tensor or a float): finite differences need only f's values, so subtract them "
            "as they come, without .item() or backward(), and store the difference into a tensor made with "
            f"torch.zeros_like(x). It raised: {exc}"
        ) from None
    got = _estimate(result, x, "numerical_gradient(f, x) for an f returning a Python float")
    assert torch.allclose(got, 2 * x, rtol=1e-5, atol=1e-5), (
        "for an f returning a Python float, float(sum(x²)), numerical_gradient at [1, -2, 3] should be close "
        f"to [2, -4, 6], got {got.tolist()}"
    )


@pytest.mark.points(4)
def test_numerical_gradient_uses_central_differences(student):
    """With eps = 1e-3, is the estimate for sum(x³) exactly the central difference 3x² + eps²?"""
    eps = 1e-3
    x = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    f = student.code("lambda x: (x**3).sum()")
    result = student.numerical_gradient(f, x.clone(), eps=eps)
    got = _estimate(result, x, "numerical_gradient(f, x, eps=1e-3)")
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
    elif not matches(central):
        message += _precision_hint(student, result.dtype)
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
    result = student.numerical_gradient(f, x.clone())
    got = _estimate(result, x, "numerical_gradient(f, x) for a 2x3 x")
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-5), (
        f"numerical_gradient of sum(w·sin x) + x[0,0]·x[1,2] should be {expected.tolist()}, "
        f"got {got.tolist()}"
        + (_precision_hint(student, result.dtype) or
           ": perturb one element at a time and store each estimate at that element's position")
    )


@pytest.mark.points(3)
def test_numerical_gradient_leaves_x_alone_and_follows_its_device(student, devices):
    """Is the caller's x unchanged, and the estimate on x's device with x's dtype?"""
    f = student.code("lambda x: (x**4).sum() / 4")  # gradient: x³
    for device in devices:
        x = torch.tensor([[0.3, -1.2], [2.0, 0.7]], dtype=F64, device=device)
        before = x.clone()
        result = student.numerical_gradient(f, x)
        got = _estimate(result, x, f"numerical_gradient(f, x) on {device}", check_dtype=True)
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
            f"got {got.tolist()} ({device})" + _precision_hint(student, result.dtype)
        )


@pytest.mark.points(2)
def test_check_gradient_accepts_correct_gradients(student, devices):
    """Does check_gradient() return True when autograd's gradient is right, on every device, leaving x alone?"""
    x = torch.tensor([0.1, -0.7, 1.3], dtype=F64)
    f = student.code("lambda x: (torch.exp(x) * torch.sin(x)).sum()")
    slope = torch.exp(x) * (torch.sin(x) + torch.cos(x))
    assert _checked(student, f, x, hands_off=True) is True, (
        "check_gradient() returned False for sum(eˣ·sin x), whose autograd gradient is correct"
        + _estimate_hint(student, f, x, slope)
    )
    good = student.code(SQUARE, name="f", SLOPE=2.0)
    assert _checked(student, good, x) is True, (
        "check_gradient() returned False for an autograd.Function x² whose backward (2x) is correct"
        + _estimate_hint(student, good, x, 2 * x)
    )
    for device in devices[1:]:
        call = f"check_gradient(f, x) for a float64 x on {device}"
        try:
            accepted = _checked(student, f, x.to(device), call)
        except AssertionError as exc:
            raise AssertionError(
                f"{call} failed: keep every tensor on x's device (the autograd gradient and the "
                f"numerical estimate both live there; no .cpu() or .numpy() on the way). It raised: {exc}"
            ) from None
        assert accepted is True, (
            f"{call} returned False for sum(eˣ·sin x), whose autograd gradient is correct"
            + _estimate_hint(student, f, x.to(device), slope)
        )


@pytest.mark.points(3)
def test_check_gradient_rejects_a_wrong_backward(student):
    """Does check_gradient() return False for autograd.Functions whose backward is wrong?"""
    x = torch.tensor([0.1, -0.7, 1.3], dtype=F64)
    for slope, shown in ((1.0, "x instead of 2x"), (-2.0, "-2x instead of 2x")):
        bad = student.code(SQUARE, name="f", SLOPE=slope)
        assert _checked(student, bad, x) is False, (
            f"check_gradient() returned True for an autograd.Function x² whose backward is wrong ({shown}): "
            "compare autograd's gradient (f(x).backward() on a copy of x) with numerical_gradient(f, x)"
        )
    # Right in the first elements, wrong in the last one only: every element must be compared.
    x = torch.tensor([[0.4, -0.9], [1.1, 0.6]], dtype=F64)
    last_wrong = student.code(SQUARE, name="f", SLOPE=torch.tensor([[2.0, 2.0], [2.0, 1.5]], dtype=F64))
    assert _checked(student, last_wrong, x) is False, (
        "check_gradient() returned True for an autograd.Function whose backward is right for the first three "
        "elements of a 2x2 x and wrong for the last one (1.5x instead of 2x): compare every element, "
        "torch.allclose(by_autograd, by_differences, ...) over the whole tensor; a loop that returns at its "
        "first element checks only that one"
    )


SWAPPED = (
    "the tolerance is atol + rtol·|numerical|, element by element; torch.allclose's own order is "
    "(input, other, rtol, atol), so pass them by name: torch.allclose(a, b, atol=atol, rtol=rtol)"
)


@pytest.mark.points(2)
def test_check_gradient_honours_tolerances(student):
    """Is a gradient off by 0.01 % accepted with the default tolerances and rejected with tight ones?"""
    x = torch.tensor([0.1, -0.7, 1.3], dtype=F64)
    slightly_off = student.code(SQUARE, name="f", SLOPE=2.0 * (1 + 1e-4))
    assert _checked(student, slightly_off, x) is True, (
        "check_gradient() rejected a gradient off by 0.01 %, within the default rtol = 1e-3"
        + _estimate_hint(student, slightly_off, x, 2 * x)
    )
    call = "check_gradient(f, x, atol=1e-9, rtol=1e-6)"
    assert _checked(student, slightly_off, x, call, atol=1e-9, rtol=1e-6) is False, (
        f"{call} accepted a gradient off by 0.01 %: use the atol and rtol you are given"
    )
    # Gradients near 1000, off by 0.03 %: 0.3 apart, far above atol, well within rtol·|numerical| ≈ 1.
    big = torch.tensor([300.0, -450.0, 600.0], dtype=F64)
    off = student.code(SQUARE, name="f", SLOPE=2.0 * (1 + 3e-4))
    assert _checked(student, off, big) is True, (
        "check_gradient() rejected gradients near ±1000 that are off by 0.03 % (about 0.3), within the "
        f"default rtol = 1e-3 (about 1 there) though not within atol = 1e-5: {SWAPPED}"
        + _estimate_hint(student, off, big, 2 * big)
    )
    # Gradients near 0.002, off by 5e-4: within atol = 1e-3 only; rtol = 1e-5 alone would reject them.
    small = torch.tensor([1e-3, -1.5e-3, 2e-3], dtype=F64)
    call = "check_gradient(f, x, atol=1e-3, rtol=1e-5)"
    shifted = student.code(SQUARE, name="f", SLOPE=torch.tensor([1.5, 2.0 + 1 / 3, 2.25], dtype=F64))
    assert _checked(student, shifted, small, call, atol=1e-3, rtol=1e-5) is True, (
        f"{call} rejected gradients near 0.002 that are off by at most 5e-4, within atol = 1e-3: {SWAPPED}"
        + _estimate_hint(student, shifted, small, 2 * small)
    )
