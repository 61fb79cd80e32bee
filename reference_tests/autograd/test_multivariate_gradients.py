"""Deliverable multivariate_gradients: ``partial_derivatives``, ``gradient`` and ``vector_jacobian_product``.

Checked: values against analytic derivatives for scalars, vectors and matrices, the order of the partial
derivatives, the device/dtype rule, that the caller's tensors are left alone, and random inputs (hidden until
after the due date).

Every assertion carries its own message, which is what the student reads; PYTEST_DONT_REWRITE keeps pytest's
assertion introspection (object reprs, memory addresses) out of it.
"""

import math

import pytest
import torch

pytestmark = pytest.mark.deliverable("multivariate_gradients")

COPY_ADVICE = "work on a copy: leaf = x.detach().clone().requires_grad_()"


def _scalar(result, call):
    """Check that `call` returned a 0-dim tensor; return its value as a Python float."""
    assert isinstance(result, torch.Tensor), f"{call} must return 0-dim tensors, got {type(result).__name__}"
    assert result.dim() == 0, f"{call} must return 0-dim tensors (shape []), got shape {list(result.shape)}"
    return result.item()


def _partials(result, n, call):
    """Check that `call` returned n 0-dim tensors in a tuple; return their values."""
    assert isinstance(result, (tuple, list)), f"{call} must return a tuple of tensors, got {type(result).__name__}"
    assert len(result) == n, f"{call} must return one partial derivative per input ({n}), got {len(result)}"
    return [_scalar(r, call) for r in result]


def _tensor_like(result, x, call, *, check_dtype=True):
    """Check that `call` returned a tensor with x's shape (and dtype and device)."""
    assert isinstance(result, torch.Tensor), f"{call} must return a torch.Tensor, got {type(result).__name__}"
    assert result.shape == x.shape, (
        f"{call} must return a tensor shaped like x {list(x.shape)}, got shape {list(result.shape)}"
    )
    if check_dtype:
        assert result.dtype == x.dtype and result.device.type == x.device.type, (
            f"wrong device/dtype: {call} of a {x.dtype} x on {x.device} must return {x.dtype} on {x.device}, "
            f"got {result.dtype} on {result.device}. {COPY_ADVICE}"
        )


def _close(result, expected, call, hint=""):
    """Compare a result with the expected tensor (float32-friendly tolerances)."""
    got = result.detach().to("cpu", torch.float64)
    want = expected.to("cpu", torch.float64)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6), (
        f"{call} returned {got.tolist()}, expected {want.tolist()}" + (f": {hint}" if hint else "")
    )


@pytest.mark.points(3)
def test_partial_derivatives_of_two_variables(student):
    """Does partial_derivatives() give ∂f/∂x and ∂f/∂y, in that order, for f(x, y) = x²y + sin y?"""
    f = student.code("lambda x, y: x**2 * y + torch.sin(y)")
    dx, dy = _partials(student.partial_derivatives(f, 3.0, 0.5), 2, "partial_derivatives(f, 3.0, 0.5)")
    expected = (2 * 3.0 * 0.5, 3.0**2 + math.cos(0.5))
    assert (dx, dy) == pytest.approx(expected, rel=1e-5), (
        f"for f(x, y) = x²·y + sin y at (3, 0.5): ∂f/∂x = 2xy = {expected[0]:.6g} and "
        f"∂f/∂y = x² + cos y = {expected[1]:.6g}, got ({dx:.6g}, {dy:.6g}) (one per input, in order)"
    )


@pytest.mark.points(2)
def test_partial_derivatives_of_three_tensors(student, devices):
    """Do three inputs (floats or tensors on any device) each get their own partial, dtype and device?"""
    f = student.code("lambda a, b, c: a * b * c + a**2 / c")
    # ∂f/∂a = bc + 2a/c, ∂f/∂b = ac, ∂f/∂c = ab - a²/c²  at (1, 2, -4)
    expected = (-8.5, -4.0, 1.9375)
    mixed = (1.0, torch.tensor(2.0, dtype=torch.float64), torch.tensor(-4.0, dtype=torch.float32))
    cases = [mixed] + [tuple(torch.tensor(v, dtype=torch.float64, device=d) for v in (1.0, 2.0, -4.0)) for d in devices]
    for inputs in cases:
        shown = ", ".join(f"{v.dtype} on {v.device}" if isinstance(v, torch.Tensor) else "float" for v in inputs)
        result = student.partial_derivatives(f, *inputs)
        values = _partials(result, 3, f"partial_derivatives(f, a, b, c) with ({shown})")
        assert values == pytest.approx(expected, rel=1e-5), (
            f"for f(a, b, c) = abc + a²/c at (1, 2, -4) the partials are {expected}, got {tuple(values)} ({shown})"
        )
        for r, x in zip(result, inputs, strict=True):
            dtype, device = (x.dtype, x.device.type) if isinstance(x, torch.Tensor) else (torch.float32, "cpu")
            assert r.dtype == dtype and r.device.type == device, (
                f"wrong device/dtype: the partial for a {dtype} input on {device} must be {dtype} "
                f"on {device}, got {r.dtype} on {r.device} ({shown})"
            )


@pytest.mark.points(3)
def test_gradient_of_vector_and_matrix_inputs(student):
    """Does gradient() return df/dx with the shape of x, for a vector and for a matrix?"""
    x = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    g = student.gradient(student.code("lambda x: (x**2).sum()"), x.clone())
    _tensor_like(g, x, "gradient(f, x)", check_dtype=False)
    _close(g, 2 * x, "gradient of sum(x²) at [1, -2, 3]")

    w = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]], dtype=torch.float64)
    x = torch.tensor([[0.1, 0.2, 0.3], [-0.4, 0.5, 1.6]], dtype=torch.float64)
    f = student.code("lambda x: (w * torch.sin(x)).sum() + x[0, 0] * x[1, 2]", w=w)
    expected = w * torch.cos(x)
    expected[0, 0] += x[1, 2]
    expected[1, 2] += x[0, 0]
    g = student.gradient(f, x.clone())
    _tensor_like(g, x, "gradient(f, x) for a 2x3 x", check_dtype=False)
    _close(g, expected, "gradient of sum(w·sin x) + x[0,0]·x[1,2]", "each element's derivative in its own place")


@pytest.mark.points(3)
def test_gradient_follows_device_and_dtype_of_x(student, devices):
    """Is gradient()'s result on x's device, with x's dtype?"""
    f = student.code("lambda x: (x**3).sum() / 3")  # gradient: x²
    for device in devices:
        for dtype in (torch.float32, torch.float64):
            x = torch.linspace(-1.0, 1.0, 6, dtype=dtype, device=device).reshape(2, 3)
            g = student.gradient(f, x.clone())
            _tensor_like(g, x, f"gradient(f, x) for a {dtype} x on {device}")
            _close(g, x**2, f"gradient of sum(x³)/3 ({dtype} on {device})")


@pytest.mark.points(2)
def test_vector_jacobian_product_weighs_by_v(student):
    """Does vector_jacobian_product() weigh each output by v, as y.backward(v) does?"""
    x = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    v = torch.tensor([1.0, 0.5, -2.0], dtype=torch.float64)
    r = student.vector_jacobian_product(student.code("lambda x: x**2"), x.clone(), v.clone())
    _tensor_like(r, x, "vector_jacobian_product(f, x, v)", check_dtype=False)
    hint = "pass v to backward: f(x).backward(v)"
    if torch.allclose(r.detach().to("cpu", torch.float64), 2 * x):
        hint = "that is the product with v = ones (y.sum().backward()): " + hint
    _close(r, v * 2 * x, "vector_jacobian_product(x², [1, 2, 3], v = [1, 0.5, -2])", hint)


@pytest.mark.points(3)
def test_vector_jacobian_product_of_a_matrix_product(student, devices):
    """For f(x) = A @ x with a 3x2 matrix x, is vᵀJ = Aᵀv, shaped like x, on x's device and dtype?"""
    a = torch.tensor([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]], dtype=torch.float64)
    x = torch.tensor([[0.5, 1.0], [-1.0, 2.0], [0.25, -0.5]], dtype=torch.float64)
    v = torch.tensor([[1.0, -1.0], [2.0, 0.5]], dtype=torch.float64)
    for device in devices:
        f = student.code("lambda x: A @ x", A=a.to(device))
        xd = x.to(device, copy=True)
        r = student.vector_jacobian_product(f, xd, v.to(device, copy=True))
        _tensor_like(r, xd, f"vector_jacobian_product(f, x, v) on {device}")
        _close(r, a.T @ v, f"vector_jacobian_product(A @ x, x, v) on {device}", "expected Aᵀv")


@pytest.mark.points(2)
def test_caller_tensors_are_left_alone(student):
    """Do gradient(), vector_jacobian_product() and partial_derivatives() leave the caller's tensors alone?"""
    x = torch.tensor([0.5, -1.5], dtype=torch.float64)
    student.gradient(student.code("lambda x: (x**2).sum()"), x)
    assert not x.requires_grad and x.grad is None, (
        f"caller's tensor mutated: gradient() left requires_grad={x.requires_grad} / a .grad on x; {COPY_ADVICE}"
    )
    assert x.tolist() == [0.5, -1.5], f"caller's tensor mutated: gradient() changed x to {x.tolist()}"

    y = torch.tensor([0.5, -1.5], dtype=torch.float64, requires_grad=True)
    student.vector_jacobian_product(student.code("lambda x: x**2"), y, torch.ones(2, dtype=torch.float64))
    assert y.grad is None, (
        f"caller's tensor mutated: vector_jacobian_product() left a gradient in x.grad; {COPY_ADVICE}"
    )
    assert y.requires_grad, "caller's tensor mutated: vector_jacobian_product() turned off requires_grad of x"

    b = torch.tensor(2.0, dtype=torch.float64)
    student.partial_derivatives(student.code("lambda a, b: a * b"), 3.0, b)
    assert not b.requires_grad and b.grad is None, (
        "caller's tensor mutated: partial_derivatives() left requires_grad / a .grad on an input; "
        "make a fresh leaf per input: x.detach().clone().requires_grad_()"
    )


@pytest.mark.points(2)
@pytest.mark.visibility("after_due_date")
def test_random_inputs(student):
    """Do gradient() and vector_jacobian_product() work on inputs drawn at random?"""
    gen = torch.Generator().manual_seed(31337)
    x = torch.rand(4, generator=gen, dtype=torch.float64) * 4 - 2
    c = torch.rand(4, generator=gen, dtype=torch.float64) * 2 - 1
    v = torch.rand(4, generator=gen, dtype=torch.float64) * 2 - 1

    g = student.gradient(student.code("lambda x: (c * x**3).sum() + x[0] * x[3]", c=c), x.clone())
    expected = 3 * c * x**2
    expected[0] += x[3]
    expected[3] += x[0]
    _tensor_like(g, x, "gradient(f, x)", check_dtype=False)
    _close(g, expected, "gradient of sum(c·x³) + x[0]·x[3] at a random x")

    r = student.vector_jacobian_product(student.code("lambda x: torch.tanh(x) * c", c=c), x.clone(), v.clone())
    _tensor_like(r, x, "vector_jacobian_product(f, x, v)", check_dtype=False)
    _close(r, v * c * (1 - torch.tanh(x) ** 2), "vector_jacobian_product(tanh(x)·c, x, v) at a random x")
