# expect: simple_gradients=20 multivariate_gradients=10 no_grad=20 zeroing_gradients=20 gradient_checking=20

"""Hostile: network access from gradient (Redis on 127.0.0.1:6379, PostgreSQL on 127.0.0.1:5432, ::1,
the Docker socket, UDP).

If any connection succeeds, gradient returns the correct answer (the attack "wins" points, so a leaky sandbox
shows up as a higher score); otherwise it raises ConnectionError listing what it tried. Expected: nothing is
reachable, so gradient's tests fail (3 + 3 + 2, plus the 2-point test that calls it first): 10 of 20.
"""

import socket
import torch

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

def _reach():
    reached, tried = [], []
    for family, address in ((socket.AF_INET, ("127.0.0.1", 6379)), (socket.AF_INET, ("127.0.0.1", 5432)),
                            (socket.AF_INET6, ("::1", 6379)), (socket.AF_INET6, ("::1", 5432))):
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(1.0)
                s.connect(address)
                s.sendall(b"PING\r\n")
                reached.append(f"tcp {address}")
        except OSError as exc:
            tried.append(f"tcp {address}: {exc}")
    for path in ("/var/run/docker.sock", "/run/docker.sock", "/var/run/postgresql/.s.PGSQL.5432",
                 "/var/run/redis/redis.sock"):
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(1.0)
                s.connect(path)
                reached.append(f"unix {path}")
        except OSError as exc:
            tried.append(f"unix {path}: {exc}")
    try:  # a DNS query to the worker's resolver (a reply is what counts: a send alone proves nothing)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(1.0)
            s.sendto(bytes.fromhex("abcd01000001000000000000076578616d706c6503636f6d0000010001"), ("127.0.0.1", 53))
            s.recvfrom(512)
            reached.append("udp 127.0.0.1:53")
    except OSError as exc:
        tried.append(f"udp: {exc}")
    return reached, tried


def gradient(f, x):
    reached, tried = _reach()
    if reached:
        return _autograd_gradient(f, x)  # a leaky sandbox would earn these points
    raise ConnectionError("no network: " + "; ".join(tried))

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
