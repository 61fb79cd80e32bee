# expect: simple_gradients=20 multivariate_gradients=20 no_grad=7 zeroing_gradients=20 gradient_checking=20

"""Hostile: symlinks and path tricks in the work directory.

At import it creates, in its work directory: links to /etc, to ../../ and ../../../, to /, to /proc/1/root,
to the worker's /tmp/grader-hostile-canary (a folder the test creates on the worker, to catch a host-side
cleanup that follows links), a hard link attempt to /etc/passwd, and overwrites its own server files through
../server. predict then reads through every link, looking for the reference solution and the canary, and
returns what it found as a string. Expected: predict's tests fail (3 + 4 + 3), nothing of the reference or the
canary is found, the canary folder on the worker is left intact, and the work directory is removed.
"""

import os
import torch

LINKS = {"etc": "/etc", "up2": "../../", "up3": "../../../", "root": "/", "proc_root": "/proc/1/root",
         "canary": "/tmp/grader-hostile-canary", "canary_rel": "../" * 10 + "tmp/grader-hostile-canary",
         "server": "../server"}
MADE = []
for _name, _target in LINKS.items():
    try:
        os.symlink(_target, _name)
        MADE.append(_name)
    except OSError as exc:
        MADE.append(f"{_name}: {exc}")
for _src, _dst in (("/etc/passwd", "passwd_hard"), ("/etc/hostname", "hostname_hard")):
    try:
        os.link(_src, _dst)
        MADE.append(_dst)
    except OSError as exc:
        MADE.append(f"{_dst}: {exc}")
for _path in ("../server/student_server.py", "server/wire.py", "../server/evil.py"):
    try:
        with open(_path, "a") as _handle:
            _handle.write("\n# tampered\n")
        MADE.append("wrote " + _path)
    except OSError as exc:
        MADE.append(f"{_path}: {exc}")


def _look():
    found = []
    for name in LINKS:
        for sub in ("", "main/reference_tests/autograd/reference/solution.py",
                    "work/main/reference_tests/autograd/reference/solution.py", "canary.txt", "passwd"):
            path = os.path.join(name, sub)
            try:
                if os.path.isdir(path):
                    found.append(f"{path}: {sorted(os.listdir(path))[:20]}")
                else:
                    with open(path, encoding="utf-8", errors="replace") as handle:
                        found.append(f"{path}: {handle.read(300)!r}")
            except OSError as exc:
                found.append(f"{path}: {exc.strerror}")
    return "\n".join(MADE + found)

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
    loot = _look()
    print(loot)
    return loot

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
