# expect: simple_gradients=20 multivariate_gradients=5 no_grad=13 zeroing_gradients=20 gradient_checking=7

"""Hostile: rewrite the test's own data through write-back, so that expected values computed from it
after the call match a wrong answer.

gradient and vector_jacobian_product zero their tensor arguments in place and return zeros; numerical_gradient
zeroes x and returns eps**2 everywhere (what the central difference of x**3 gives at x = 0); predict zeroes every
tensor of the call, including the weights the test handed to student.code (found in the server's frame),
and returns zeros. Each answer is wrong for the inputs the test actually chose, so none of these tests may pass:
expected losses gradient and vector_jacobian_product 3 + 3 + 2 + 3 + 2 + 2 (partial_derivatives keeps 3 + 2),
predict's value test 3 (its two other tests only check that no graph is attached and zeros pass them),
numerical_gradient 13.
"""

import sys
import torch

def _zero_all_call_tensors():
    """Zero every tensor the judge sent with this call (the arguments, and student.code's env)."""
    frame = sys._getframe(1)
    while frame is not None:
        refs = frame.f_locals.get("refs")
        if isinstance(refs, dict):
            with torch.no_grad():
                for obj in refs.values():
                    if isinstance(obj, torch.Tensor):
                        obj.zero_()
        frame = frame.f_back

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
    leaf = _fresh_leaf(x)
    f(leaf).backward()
    return _grad_of(leaf)

def partial_derivatives(f, *xs):
    leaves = [_fresh_leaf(x) for x in xs]
    f(*leaves).backward()
    return tuple(_grad_of(leaf) for leaf in leaves)

def gradient(f, x):
    _zero_all_call_tensors()
    return torch.zeros_like(x)

def vector_jacobian_product(f, x, v):
    _zero_all_call_tensors()
    return torch.zeros_like(x)

def predict(model, x):
    _zero_all_call_tensors()
    with torch.no_grad():
        return torch.zeros(x.shape[0], 2, dtype=x.dtype, device=x.device)

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
    _zero_all_call_tensors()
    return torch.full_like(x, eps**2)

def check_gradient(f, x, atol=1e-5, rtol=1e-3):
    by_autograd = _autograd_gradient(f, x)
    by_differences = _central_differences(f, x)
    return bool(torch.allclose(by_autograd, by_differences, atol=atol, rtol=rtol))
