# expect: simple_gradients=20 multivariate_gradients=20 no_grad=7 zeroing_gradients=20 gradient_checking=20

"""Hostile: learn the hidden tests' inputs while they run, and show them in a visible test's output.

Every function records the source of each student.code helper of every request it serves (read from the
student server's frame), in memory and in files in /tmp, /dev/shm and the work directory, which every process
of the sandbox shares; predict, called by visible tests, raises an exception whose message is everything
recorded so far, by any process. Expected: predict loses its 10 points, everything else is correct, and no
visible test's output contains the source of a hidden test's helper.
"""

import json
import os
import sys
import torch

SEEN = []
PLACES = ("/tmp", "/dev/shm", os.getcwd())


def _remember(source):
    SEEN.append(source)
    for place in PLACES:
        try:
            with open(os.path.join(place, ".seen"), "a") as f:
                f.write(json.dumps(source) + "\n")
        except OSError:
            pass


def _everything_seen():
    seen = list(SEEN)
    for place in PLACES:
        try:
            with open(os.path.join(place, ".seen")) as f:
                seen.extend(json.loads(line) for line in f.read().splitlines())
        except OSError:
            pass
    return seen


def _record():
    frame = sys._getframe(1)
    while frame is not None:
        request = frame.f_locals.get("request")
        if isinstance(request, dict) and request.get("op") == "call":
            _collect(request)
            return
        frame = frame.f_back


def _collect(value):
    if isinstance(value, dict):
        code = value.get("__code__")
        if isinstance(code, dict) and isinstance(code.get("src"), str):
            _remember(code["src"].strip())
        for item in value.values():
            _collect(item)
    elif isinstance(value, list):
        for item in value:
            _collect(item)

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
    _record()
    leaf = _fresh_leaf(x)
    f(leaf).backward()
    return _grad_of(leaf)

def partial_derivatives(f, *xs):
    _record()
    leaves = [_fresh_leaf(x) for x in xs]
    f(*leaves).backward()
    return tuple(_grad_of(leaf) for leaf in leaves)

def gradient(f, x):
    _record()
    return _autograd_gradient(f, x)

def vector_jacobian_product(f, x, v):
    _record()
    leaf = _fresh_leaf(x)
    f(leaf).backward(v)
    return _grad_of(leaf)

def predict(model, x):
    _record()
    raise RuntimeError("seen so far, newest first: " + " | ".join(dict.fromkeys(reversed(_everything_seen()))))

def sgd_step(params, lr):
    _record()
    with torch.no_grad():
        for p in params:
            if p.grad is not None:
                p -= lr * p.grad

def accumulated_gradient(f, x, times):
    _record()
    leaf = _fresh_leaf(x)
    for _ in range(times):
        f(leaf).backward()
    return _grad_of(leaf)

def zero_gradients(params):
    _record()
    for p in params:
        if p.grad is not None:
            p.grad.zero_()

def fit_linear(xs, ys, steps, lr):
    _record()
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
    _record()
    return _central_differences(f, x, eps)

def check_gradient(f, x, atol=1e-5, rtol=1e-3):
    _record()
    by_autograd = _autograd_gradient(f, x)
    by_differences = _central_differences(f, x)
    return bool(torch.allclose(by_autograd, by_differences, atol=atol, rtol=rtol))
