# expect: simple_gradients=0 multivariate_gradients=7 no_grad=7 zeroing_gradients=13 gradient_checking=13

"""Hostile: results whose equality lies.

derivative returns a Tensor subclass whose __eq__, __bool__ and item() claim success (value 0);
partial_derivatives returns objects equal to everything; gradient returns a Tensor subclass whose
__torch_function__ makes every torch comparison true; predict returns an always-equal plain object; fit_linear
returns float subclasses equal to everything (value 0); check_gradient returns an object that pretends to be
the bool True (its __class__ says bool). The judge rebuilds plain values from data, so none of it passes:
expected losses are derivative 20, partial_derivatives 3 + 2, gradient 3 + 3 + 2, predict 10, fit_linear 10,
check_gradient 7.
"""

import torch

class AlwaysEqual:
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    def __bool__(self):
        return True

    def __float__(self):
        return 7.0

    def __repr__(self):
        return "tensor(7.)"

    __hash__ = object.__hash__


class LyingTensor(torch.Tensor):
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    def __bool__(self):
        return True

    def item(self):
        return 7.0

    __hash__ = torch.Tensor.__hash__


class ComparisonLiar(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in ("allclose", "equal", "__eq__", "eq", "isclose", "all", "any"):
            return True
        return super().__torch_function__(func, types, args, kwargs or {})


class LyingFloat(float):
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    __hash__ = float.__hash__


class FakeTrue:
    @property
    def __class__(self):
        return bool

    def __eq__(self, other):
        return True

    def __bool__(self):
        return True

    __hash__ = object.__hash__

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
    return torch.tensor(0.0).as_subclass(LyingTensor)

def partial_derivatives(f, *xs):
    return tuple(AlwaysEqual() for _ in xs)

def gradient(f, x):
    return torch.zeros_like(x).as_subclass(ComparisonLiar)

def vector_jacobian_product(f, x, v):
    leaf = _fresh_leaf(x)
    f(leaf).backward(v)
    return _grad_of(leaf)

def predict(model, x):
    return AlwaysEqual()

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
    for p in params:
        if p.grad is not None:
            p.grad.zero_()

def fit_linear(xs, ys, steps, lr):
    return LyingFloat(0.0), LyingFloat(0.0)

def numerical_gradient(f, x, eps=1e-6):
    return _central_differences(f, x, eps)

def check_gradient(f, x, atol=1e-5, rtol=1e-3):
    return FakeTrue()
