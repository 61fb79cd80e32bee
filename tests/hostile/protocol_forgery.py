# expect: simple_gradients=0 multivariate_gradients=20 no_grad=7 zeroing_gradients=20 gradient_checking=7

"""Hostile: writes to the protocol channel itself (the judge's frame stream), found through the student
server object (up the call stack, or gc) or by scanning /proc/self/fd for a write-only pipe that is not stderr.

* derivative writes a well-formed frame claiming success ("ok": true, "score": 100, "status": "passed") with
  a wrong value and no request id, and patches the server so that its real reply is dropped: the judge fails
  the call at once (a reply nobody asked for), rather than wait for a reply that never comes.
* predict writes a frame header announcing 4 GiB: the judge rejects the stream, the call crashes.
* numerical_gradient writes a frame whose body is not JSON, then returns the right answer: the judge rejects
  the stream, the call crashes.
Expected: each costs only the tests that call that function (derivative 20, predict 13, numerical 13).
"""

import gc
import json
import os
import struct
import sys
import torch

def _server():
    # Up the call stack first (the server is the `self` of the frame that called us), then the collector's
    # objects (a frozen heap hides it there).
    frame = sys._getframe()
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if type(candidate).__name__ == "Server" and hasattr(candidate, "proto_out"):
            return candidate
        frame = frame.f_back
    for obj in gc.get_objects():
        if type(obj).__name__ == "Server" and hasattr(obj, "proto_out"):
            return obj
    return None


def _protocol_fd():
    server = _server()
    if server is not None:
        return server.proto_out.fileno()
    stderr = os.readlink("/proc/self/fd/2")
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
            flags = int(open(f"/proc/self/fdinfo/{fd}").read().split("flags:")[1].split()[0], 8)
        except (OSError, IndexError, ValueError):
            continue
        if link.startswith(("pipe:", "socket:")) and link != stderr and flags & 3 == 1:
            return fd
    raise RuntimeError("no protocol fd found")


def _frame(message):
    body = json.dumps(message).encode()
    return struct.pack(">I", len(body)) + body


class _DropOnce:
    """Stands in for the server's protocol stream: swallows the next reply, then puts the real stream back."""

    def __init__(self, server):
        self.server = server
        self.real = server.proto_out

    def write(self, data):
        self.server.proto_out = self.real
        return len(data)

    def flush(self):
        return None


def _drop_next_reply():
    server = _server()
    if server is not None:
        server.proto_out = _DropOnce(server)

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
    fd = _protocol_fd()
    _drop_next_reply()
    os.write(fd, _frame({"ok": True, "value": "PASSED", "score": 100, "status": "passed",
                                     "verdict": "passed", "output": "All tests passed"}))
    return torch.tensor(0.0)

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
    os.write(_protocol_fd(), struct.pack(">I", 0xFFFFFFFF) + b"{}")
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
    os.write(_protocol_fd(), struct.pack(">I", 12) + b"not json!!!!")
    return _central_differences(f, x, eps)

def check_gradient(f, x, atol=1e-5, rtol=1e-3):
    by_autograd = _autograd_gradient(f, x)
    by_differences = _central_differences(f, x)
    return bool(torch.allclose(by_autograd, by_differences, atol=atol, rtol=rtol))
