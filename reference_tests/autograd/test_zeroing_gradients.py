"""Deliverable zeroing_gradients: ``accumulated_gradient``, ``zero_gradients`` and ``fit_linear``.

Checked: that repeated backward passes add up (seed example, with the CPU float32 leaf a Python float stands
for, and random points, hidden until after the due date), that zero_gradients zeroes in place and leaves
missing gradients missing, and that fit_linear follows plain gradient descent exactly (the expected iterates
are computed here with the analytic gradient of the mean squared error), converges, and keeps the dtype of
the data. When fit_linear is off, the message names the mistake whose iterates it matches: a summed instead
of a mean loss, gradients zeroed between backward() and the update, gradients never zeroed, one update too
many or too few, float32 parameters for float64 data.

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
    """Do 3 backward passes of x² + 3x + 1 at x = 2 leave 3 · 7 = 21 in .grad (1 pass 7), in CPU float32?"""
    f = student.code("lambda x: x**2 + 3*x + 1")
    _accumulation_check(student, f, "x² + 3x + 1", 2.0, 1, 7.0)
    _accumulation_check(student, f, "x² + 3x + 1", 2.0, 3, 7.0)
    g = student.accumulated_gradient(f, 2.0, 2)
    assert g.dtype == torch.float32 and g.device.type == "cpu", (
        f"wrong device/dtype: for a Python float x the leaf, and so its .grad, must be a CPU float32 tensor, "
        f"got {g.dtype} on {g.device}: torch.tensor(float(x), requires_grad=True)"
    )


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


def _gradient_descent(xs, ys, steps, lr, accumulate=False, summed=False):
    """Plain gradient descent on mean((w·x + b - y)²) from w = b = 0, with the analytic gradient.

    With accumulate=True, each step uses the sum of all gradients so far: what forgetting to zero does.
    With summed=True, the loss is the sum of the squared errors: every gradient is n times larger.
    """
    n = 1 if summed else len(xs)
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


def _float32_descent(xs, ys, steps, lr):
    """The same descent with w and b float32 tensors and the data as given: what float32 parameters give."""
    data, targets = torch.tensor(xs, dtype=torch.float64), torch.tensor(ys, dtype=torch.float64)
    w = torch.zeros((), requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    for _ in range(steps):
        loss = ((w * data + b - targets) ** 2).mean()
        w.grad = b.grad = None
        loss.backward()
        with torch.no_grad():
            w -= lr * w.grad
            b -= lr * b.grad
    return w.item(), b.item()


def _explained(student):
    """'; ' and the diagnosis, or '' when fit_linear's iterates match no known mistake."""
    found = _diagnosis(student)
    return f"; {found}" if found else ""


DIAGNOSIS_DATA = ([0.0, 1.0, 2.0, 3.0], [1.0, 2.5, 5.5, 6.0], 0.05)


def _diagnosis(student):
    """Which known mistake fit_linear()'s iterates match, as a message naming it ('' when none does).

    Runs fit_linear for 1 and 2 steps on small float64 data and compares with gradient descent done wrong in
    each known way; called only once a test has failed, so correct submissions pay nothing for it.
    """
    xs, ys, lr = DIAGNOSIS_DATA
    t = dict(dtype=torch.float64)
    try:
        one = student.fit_linear(torch.tensor(xs, **t), torch.tensor(ys, **t), 1, lr)
        two = student.fit_linear(torch.tensor(xs, **t), torch.tensor(ys, **t), 2, lr)
    except AssertionError:  # it raised: the test's own message says more
        return ""
    if not all(isinstance(r, (tuple, list)) and len(r) == 2 and all(isinstance(v, float) for v in r)
               for r in (one, two)):
        return ""

    def gives(got, expected, rel=1e-9):
        return all(math.isfinite(v) for v in got) and tuple(got) == pytest.approx(expected, rel=rel, abs=1e-12)

    if gives(one, (0.0, 0.0)) and gives(two, (0.0, 0.0)):
        return (
            "gradients zeroed between backward() and the update: w and b never move from 0, because every "
            "update uses the gradient after it was zeroed; zero the gradients before backward(), then update"
        )
    if gives(one, _gradient_descent(xs, ys, 1, lr, summed=True)):
        return (
            f"summed loss: on {len(xs)} data points your steps are {len(xs)} times those of the mean squared "
            "error, which is what the sum of the squared errors gives (and on more points they blow up); the "
            "loss is the mean, ((w * xs + b - ys) ** 2).mean(), so that the step does not grow with the data"
        )
    if gives(one, _gradient_descent(xs, ys, 1, lr)):
        if gives(two, _gradient_descent(xs, ys, 2, lr, accumulate=True)):
            return ZERO_ADVICE + " (the second step used the sum of both steps' gradients)"
        if gives(two, _gradient_descent(xs, ys, 1, lr)) or gives(two, _gradient_descent(xs, ys, 3, lr)):
            return "fit_linear(..., steps=2) did not make 2 updates: it must make exactly `steps` updates"
        return ""
    if gives(one, _float32_descent(xs, ys, 1, lr), rel=1e-6):  # right to float32's precision only
        return (
            "float32 parameters: on float64 data your (w, b) are what float32 w and b give; start them with "
            "the dtype and device of xs: torch.zeros((), dtype=xs.dtype, device=xs.device, requires_grad=True)"
        )
    for n in (0, 2):
        if gives(one, _gradient_descent(xs, ys, n, lr)):
            return f"fit_linear(..., steps=1) made {n} updates: it must make exactly `steps` updates"
    return ""


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
    if (w, b) == pytest.approx(expected, rel=1e-6):
        return
    message = (
        f"after {steps} steps of lr = {lr} from w = b = 0, gradient descent on the mean squared error gives "
        f"(w, b) = ({expected[0]:.6g}, {expected[1]:.6g}), got ({w:.6g}, {b:.6g})"
    )
    off_by_one = [n for n in (steps - 1, steps + 1) if (w, b) == pytest.approx(_gradient_descent(xs, ys, n, lr))]
    if (w, b) == pytest.approx(_gradient_descent(xs, ys, steps, lr, accumulate=True), rel=1e-6):
        message = f"{ZERO_ADVICE} (your (w, b) = ({w:.6g}, {b:.6g}) are what summed gradients give)"
    elif off_by_one:
        message = f"fit_linear(..., steps={steps}) made {off_by_one[0]} updates: it must make exactly `steps` updates"
    else:
        message += _explained(student)
    pytest.fail(message)


@pytest.mark.points(3)
def test_fit_linear_converges(student):
    """Does fit_linear recover y = 2x - 1 from exact data after 100 steps?"""
    xs = torch.linspace(-1.0, 1.0, 21)
    w, b = _fit(student, xs, 2 * xs - 1, 100, 0.2)
    assert (w, b) == pytest.approx((2.0, -1.0), abs=1e-3), (
        f"fitting y = 2x - 1 for 100 steps of lr = 0.2 should reach (w, b) ≈ (2, -1), got ({w:.6g}, {b:.6g})"
        + _explained(student)
    )


@pytest.mark.points(3)
def test_fit_linear_keeps_dtype_and_device_of_data(student, devices):
    """With float64 data (on any device), are w and b float64 too, so that no precision is lost?"""
    xs, ys = [0.1, 0.2, 0.3, 0.4], [0.3, 0.5, 0.4, 0.9]
    expected = _gradient_descent(xs, ys, 1, 0.1)
    summed = _gradient_descent(xs, ys, 1, 0.1, summed=True)
    for device in devices:
        t = dict(dtype=torch.float64, device=device)
        w, b = _fit(student, torch.tensor(xs, **t), torch.tensor(ys, **t), 1, 0.1)
        # Full float64 precision of what one step of the descent gives, right or wrong: a summed loss, or no
        # update at all (gradients zeroed before the update), are the other two tests' business.
        if any((w, b) == pytest.approx(kept, rel=1e-12) for kept in (expected, summed, (0.0, 0.0))):
            continue
        message = (
            f"on float64 data on {device} one step of lr = 0.1 gives (w, b) = ({expected[0]!r}, {expected[1]!r}), "
            f"got ({w!r}, {b!r})"
        )
        # Blame the dtype only when the answer is what float32 parameters give (right to float32's precision, not
        # to float64's); otherwise say which mistake it matches.
        if (w, b) == pytest.approx(_float32_descent(xs, ys, 1, 0.1), rel=1e-6):
            message = (
                f"fit_linear() lost precision on float64 data on {device}: one step gives "
                f"(w, b) = ({expected[0]!r}, {expected[1]!r}), got ({w!r}, {b!r}), which is what float32 "
                "parameters give; start w and b as zeros with the dtype and device of xs: "
                "torch.zeros((), dtype=xs.dtype, device=xs.device, requires_grad=True)"
            )
        else:
            message += _explained(student)
        pytest.fail(message)
