"""Deliverable zeroing_gradients: ``accumulated_gradient``, ``zero_gradients`` and ``fit_linear``.

Checked: that repeated backward passes add up (seed example and random points, the latter hidden until after
the due date), that zero_gradients zeroes in place and leaves missing gradients missing, and that fit_linear
follows plain gradient descent exactly (the expected iterates are computed here with the analytic gradient of
the mean squared error), converges, and keeps the dtype of the data.

Every assertion carries its own message, which is what the student reads; PYTEST_DONT_REWRITE keeps pytest's
assertion introspection (object reprs, memory addresses) out of it.
"""

import math
import random

import pytest
import torch

pytestmark = pytest.mark.deliverable("zeroing_gradients")


def _scalar(result, call):
    """Check that `call` returned a 0-dim tensor; return its value as a Python float."""
    assert isinstance(result, torch.Tensor), f"{call} must return a torch.Tensor, got {type(result).__name__}"
    assert result.dim() == 0, f"{call} must return a 0-dim tensor (shape []), got shape {list(result.shape)}"
    return result.item()


def _accumulation_check(student, f, shown, x, times, slope):
    """accumulated_gradient(f, x, times) must be times · f'(x)."""
    call = f"accumulated_gradient(f, {x}, {times})"
    got = _scalar(student.accumulated_gradient(f, x, times), call)
    expected = times * slope
    message = f"{call} for f(x) = {shown} should be {times} · f'({x}) = {expected:.6g}, got {got:.6g}"
    if times > 1 and got == pytest.approx(slope, rel=1e-4):
        message = (
            f"{call} returned f'(x) = {got:.6g} rather than {times} · f'(x) = {expected:.6g}: the "
            "gradient was zeroed (or the leaf re-created) between passes; here backward() must run on "
            "one leaf, adding to its .grad each time"
        )
    assert got == pytest.approx(expected, rel=1e-4, abs=1e-5), message


@pytest.mark.points(3)
def test_accumulated_gradient_seed_example(student):
    """Do 3 backward passes of x² + 3x + 1 at x = 2 leave 3 · 7 = 21 in .grad (and 1 pass leave 7)?"""
    f = student.code("lambda x: x**2 + 3*x + 1")
    _accumulation_check(student, f, "x² + 3x + 1", 2.0, 1, 7.0)
    _accumulation_check(student, f, "x² + 3x + 1", 2.0, 3, 7.0)


@pytest.mark.points(2)
@pytest.mark.visibility("after_due_date")
def test_accumulated_gradient_random_points(student):
    """Does accumulation hold for other functions, points and counts drawn at random?"""
    rng = random.Random(4242)
    c = round(rng.uniform(0.5, 2.0), 3)
    f = student.code("lambda x: c * torch.sin(x) + x**2", c=c)
    for _ in range(2):
        x, times = round(rng.uniform(-2.0, 2.0), 4), rng.randint(2, 6)
        _accumulation_check(student, f, f"{c}·sin x + x²", x, times, c * math.cos(x) + 2 * x)


def _params_with_grads(device):
    w = torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.float64, device=device, requires_grad=True)
    b = torch.tensor([0.25, -0.75, 2.0], device=device, requires_grad=True)
    w.grad = torch.tensor([[0.5, 1.0], [-2.0, 4.0]], dtype=torch.float64, device=device)
    b.grad = torch.tensor([4.0, -1.0, 3.0], device=device)
    return w, b


@pytest.mark.points(3)
def test_zero_gradients_zeroes_in_place(student, devices):
    """Does zero_gradients() leave zero gradients (same shape, dtype, device) and the values as they were?"""
    for device in devices:
        w, b = _params_with_grads(device)
        before = [w.detach().clone(), b.detach().clone()]
        student.zero_gradients([w, b])
        for name, p, value in zip(("w", "b"), (w, b), before, strict=True):
            assert p.grad is not None, (
                f"zero_gradients() set {name}.grad to None: the gradients must be zeroed in place, "
                "p.grad.zero_(), keeping the tensor (as optimizer.zero_grad(set_to_none=False) does)"
            )
            assert p.grad.shape == p.shape and p.grad.dtype == p.dtype and p.grad.device == p.device, (
                f"zero_gradients() replaced {name}.grad with a {p.grad.dtype} tensor of shape "
                f"{list(p.grad.shape)} on {p.grad.device}: zero the existing gradient in place, "
                "p.grad.zero_()"
            )
            assert torch.all(p.grad == 0), f"after zero_gradients() {name}.grad is {p.grad.tolist()}, not zeros"
            assert torch.equal(p.detach(), value) and p.requires_grad, (
                f"zero_gradients() must change only the gradients, but parameter {name} changed"
            )


@pytest.mark.points(2)
def test_zero_gradients_leaves_missing_grads_missing(student):
    """Does a parameter whose .grad is None keep .grad None?"""
    w, _ = _params_with_grads("cpu")
    fresh = torch.tensor([1.0, 2.0], requires_grad=True)
    student.zero_gradients([w, fresh])
    assert fresh.grad is None, (
        "zero_gradients() gave a gradient to a parameter that had none: a .grad of None must stay None"
    )
    assert w.grad is not None, "zero_gradients() set w.grad to None: zero it in place instead, p.grad.zero_()"
    assert torch.all(w.grad == 0), f"after zero_gradients() w.grad is {w.grad.tolist()}, not zeros"


def _gradient_descent(xs, ys, steps, lr, accumulate=False):
    """Plain gradient descent on mean((w·x + b - y)²) from w = b = 0, with the analytic gradient.

    With accumulate=True, each step uses the sum of all gradients so far: what forgetting to zero does.
    """
    n = len(xs)
    w = b = 0.0
    total_w = total_b = 0.0
    for _ in range(steps):
        residuals = [w * x + b - y for x, y in zip(xs, ys, strict=True)]
        grad_w = 2.0 * sum(r * x for r, x in zip(residuals, xs, strict=True)) / n
        grad_b = 2.0 * sum(residuals) / n
        if accumulate:
            total_w, total_b = total_w + grad_w, total_b + grad_b
            grad_w, grad_b = total_w, total_b
        w, b = w - lr * grad_w, b - lr * grad_b
    return w, b


def _fit(student, xs, ys, steps, lr):
    """Call fit_linear and check that it returned two Python floats."""
    result = student.fit_linear(xs, ys, steps, lr)
    assert isinstance(result, (tuple, list)) and len(result) == 2, (
        f"fit_linear() must return a pair (w, b), got {result!r}"
    )
    w, b = result
    assert all(isinstance(v, float) for v in (w, b)), (
        f"fit_linear() must return (w, b) as Python floats (w.item(), b.item()), got "
        f"({type(w).__name__}, {type(b).__name__})"
    )
    return w, b


ZERO_ADVICE = "gradients accumulated across steps: zero them before each backward"


@pytest.mark.points(4)
def test_fit_linear_follows_gradient_descent_exactly(student):
    """After exactly 5 steps, are (w, b) the iterates of plain gradient descent from w = b = 0?"""
    xs, ys = [0.0, 1.0, 2.0, 3.0], [1.0, 2.5, 5.5, 6.0]
    steps, lr = 5, 0.05
    w, b = _fit(student, torch.tensor(xs, dtype=torch.float64), torch.tensor(ys, dtype=torch.float64), steps, lr)
    expected = _gradient_descent(xs, ys, steps, lr)
    message = (
        f"after {steps} steps of lr = {lr} from w = b = 0, gradient descent on the mean squared error gives "
        f"(w, b) = ({expected[0]:.6g}, {expected[1]:.6g}), got ({w:.6g}, {b:.6g})"
    )
    if (w, b) == pytest.approx(_gradient_descent(xs, ys, steps, lr, accumulate=True), rel=1e-6):
        message = f"{ZERO_ADVICE} (your (w, b) = ({w:.6g}, {b:.6g}) are what summed gradients give)"
    for n in (steps - 1, steps + 1):
        if (w, b) == pytest.approx(_gradient_descent(xs, ys, n, lr), rel=1e-6):
            message = f"fit_linear(..., steps={steps}) made {n} updates: it must make exactly `steps` updates"
    assert (w, b) == pytest.approx(expected, rel=1e-6), message


@pytest.mark.points(3)
def test_fit_linear_converges(student):
    """Does fit_linear recover y = 2x - 1 from exact data after 100 steps?"""
    xs = torch.linspace(-1.0, 1.0, 21)
    w, b = _fit(student, xs, 2 * xs - 1, 100, 0.2)
    assert (w, b) == pytest.approx((2.0, -1.0), abs=1e-3), (
        f"fitting y = 2x - 1 for 100 steps of lr = 0.2 should reach (w, b) ≈ (2, -1), "
        f"got ({w:.6g}, {b:.6g}); "
        f"if it oscillates or blows up: {ZERO_ADVICE}"
    )


@pytest.mark.points(3)
def test_fit_linear_keeps_dtype_and_device_of_data(student, devices):
    """With float64 data (on any device), are w and b float64 too, so that no precision is lost?"""
    xs, ys = [0.1, 0.2, 0.3, 0.4], [0.3, 0.5, 0.4, 0.9]
    expected = _gradient_descent(xs, ys, 1, 0.1)
    for device in devices:
        t = dict(dtype=torch.float64, device=device)
        w, b = _fit(student, torch.tensor(xs, **t), torch.tensor(ys, **t), 1, 0.1)
        assert (w, b) == pytest.approx(expected, rel=1e-12), (
            f"fit_linear() lost precision on float64 data on {device}: one step gives "
            f"(w, b) = ({expected[0]!r}, {expected[1]!r}), got ({w!r}, {b!r}); start w and b as zeros "
            "with the dtype and device of xs: "
            "torch.zeros((), dtype=xs.dtype, device=xs.device, requires_grad=True)"
        )
