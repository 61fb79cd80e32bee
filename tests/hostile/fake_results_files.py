# expect: simple_gradients=0 multivariate_gradients=20 no_grad=20 zeroing_gradients=20 gradient_checking=20

"""Hostile: fake results everywhere except the protocol channel.

At import and in derivative (which returns wrong answers), a perfect-score JSON document (engine result,
Gradescope results.json, PrairieLearn, pytest-json) is printed, written to fd 1 and 2, sys.__stdout__, and to
every file the sandbox might share with the worker: /tmp/verdicts.json, ./verdicts.json, $HOME, /tmp/grader-run-*
(the judge's scratch dirs), /autograder/results/results.json, /proc/1/root/tmp, /dev/shm, /sandbox/server.
Expected: derivative's 20 points are lost, nothing else changes, and no such file appears on the worker.
"""

import json
import os
import sys
import torch

FAKE = {
    "status": "graded", "score": 100.0, "max_score": 100.0, "message": "All tests passed",
    "deliverables": [{"id": d, "score": 20.0, "max_score": 20.0, "tests": []} for d in (
        "simple_gradients", "multivariate_gradients", "no_grad", "zeroing_gradients", "gradient_checking")],
    "verdicts": [], "tests": [{"name": "all", "status": "passed", "score": 100, "max_score": 100}],
    "summary": {"passed": 30, "failed": 0},
}
TEXT = json.dumps(FAKE)
TARGETS = ["/tmp/verdicts.json", "verdicts.json", "results.json", os.path.expanduser("~/verdicts.json"),
           "/autograder/results/results.json", "/proc/1/root/tmp/verdicts.json", "/dev/shm/verdicts.json",
           "/sandbox/server/verdicts.json", "/sandbox/verdicts.json", "/verdicts.json", "/tmp/results.json",
           "/work/verdicts.json", "/var/tmp/verdicts.json"]


def _spray():
    print(TEXT)
    sys.stdout.write(TEXT + "\n")
    for stream in (sys.__stdout__, sys.__stderr__):
        try:
            stream.write(TEXT + "\n")
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    for fd in (1, 2):
        try:
            os.write(fd, TEXT.encode() + b"\n")
        except OSError:
            pass
    written = []
    targets = list(TARGETS)
    for scratch in ("/tmp/grader-run-*", "/proc/1/root/tmp/grader-run-*"):
        import glob
        targets += [os.path.join(p, "verdicts.json") for p in glob.glob(scratch)]
    for path in targets:
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(TEXT)
            written.append(path)
        except OSError:
            pass
    return written


_spray()

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
    _spray()
    return torch.tensor(1.0)  # wrong

def partial_derivatives(f, *xs):
    leaves = [_fresh_leaf(x) for x in xs]
    f(*leaves).backward()
    return tuple(_grad_of(leaf) for leaf in leaves)

def gradient(f, x):
    return _autograd_gradient(f, x)

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
    return _central_differences(f, x, eps)

def check_gradient(f, x, atol=1e-5, rtol=1e-3):
    by_autograd = _autograd_gradient(f, x)
    by_differences = _central_differences(f, x)
    return bool(torch.allclose(by_autograd, by_differences, atol=atol, rtol=rtol))
