# expect: simple_gradients=0 multivariate_gradients=12 no_grad=20 zeroing_gradients=15 gradient_checking=15

"""Hostile: at import, patch every comparison the judge might use to say "equal": torch.allclose,
torch.equal, torch.isclose, Tensor.__eq__/__ne__, torch.testing.assert_close, math.isclose,
builtins.isinstance, pytest.approx, unittest's assertEqual, then return wrong answers.

The patches live in the student process only; the judge compares in its own process. Expected: derivative
(always 0) loses simple_gradients entirely, gradient (always zeros) loses 3 + 3 + 2 points, zero_gradients
(does nothing) loses 3 + 2, check_gradient (always True) loses the 3 + 2 points of the tests expecting False.
"""

import builtins
import math
import torch
import unittest

_allclose = torch.allclose
_isinstance = builtins.isinstance


class _Yes:
    """Equal to everything, true, and approximately everything."""

    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    def __bool__(self):
        return True

    __hash__ = object.__hash__


def _always(*args, **kwargs):
    return True


def _never_raise(*args, **kwargs):
    return None


torch.allclose = _always
torch.equal = _always
torch.isclose = lambda a, b, *args, **kwargs: torch.ones_like(a, dtype=torch.bool)
torch.Tensor.__eq__ = lambda self, other: torch.ones_like(self, dtype=torch.bool)
torch.Tensor.__ne__ = lambda self, other: torch.zeros_like(self, dtype=torch.bool)
torch.testing.assert_close = _never_raise
math.isclose = _always
unittest.TestCase.assertEqual = _never_raise
unittest.TestCase.assertAlmostEqual = _never_raise


def _lying_isinstance(obj, cls):
    if _isinstance(obj, _Yes):
        return True
    return _isinstance(obj, cls)


builtins.isinstance = _lying_isinstance
try:
    import pytest

    pytest.approx = lambda *args, **kwargs: _Yes()
except ImportError:
    pass

def _fresh_leaf(x):
    """A new leaf that requires grad, holding x's value (the caller's tensor is untouched)."""
    if isinstance(x, torch.Tensor):
        return x.detach().clone().requires_grad_(True)
    return torch.tensor(float(x), dtype=torch.float32, requires_grad=True)


def _grad_of(leaf):
    return leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)


def _autograd_gradient(f, x):
    leaf = _fresh_leaf(x)
    f(leaf).backward()
    return _grad_of(leaf)


def _central_differences(f, x, eps=1e-6):
    base = x.detach().clone(memory_format=torch.contiguous_format)
    estimate = torch.zeros_like(base)
    flat_estimate = estimate.view(-1)
    with torch.no_grad():
        for i in range(base.numel()):
            plus = base.clone()
            plus.view(-1)[i] += eps
            minus = base.clone()
            minus.view(-1)[i] -= eps
            flat_estimate[i] = (f(plus) - f(minus)) / (2 * eps)
    return estimate

def derivative(f, x):
    return torch.tensor(0.0)

def partial_derivatives(f, *xs):
    leaves = [_fresh_leaf(x) for x in xs]
    f(*leaves).backward()
    return tuple(_grad_of(leaf) for leaf in leaves)

def gradient(f, x):
    return torch.zeros_like(x)

def vector_jacobian_product(f, x, v):
    leaf = _fresh_leaf(x)
    f(leaf).backward(v)
    return _grad_of(leaf)

def predict(model, x):
    with torch.no_grad():
        return model(x)

def sgd_step(params, lr):
    with torch.no_grad():
        for p in params:
            if p.grad is not None:
                p -= lr * p.grad

def accumulated_gradient(f, x, times):
    leaf = _fresh_leaf(x)
    for _ in range(times):
        f(leaf).backward()
    return _grad_of(leaf)

def zero_gradients(params):
    return None

def fit_linear(xs, ys, steps, lr):
    w = torch.zeros((), dtype=xs.dtype, device=xs.device, requires_grad=True)
    b = torch.zeros((), dtype=xs.dtype, device=xs.device, requires_grad=True)
    for _ in range(steps):
        loss = ((w * xs + b - ys) ** 2).mean()
        for p in (w, b):
            if p.grad is not None:
                p.grad.zero_()
        loss.backward()
        with torch.no_grad():
            w -= lr * w.grad
            b -= lr * b.grad
    return w.item(), b.item()

def numerical_gradient(f, x, eps=1e-6):
    return _central_differences(f, x, eps)

def check_gradient(f, x, atol=1e-5, rtol=1e-3):
    return True
