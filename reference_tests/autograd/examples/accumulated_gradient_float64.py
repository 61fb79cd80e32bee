# expect: simple_gradients=20 multivariate_gradients=20 no_grad=20 zeroing_gradients=17 gradient_checking=20
"""accumulated_gradient() makes its leaf float64 although x is a Python float (a CPU float32 tensor): the values add
up right, but the seed test (3) checks the result's dtype."""
import torch


def _fresh_leaf(x):
    if isinstance(x, torch.Tensor):
        return x.detach().clone().requires_grad_(True)
    return torch.tensor(float(x), dtype=torch.float32, requires_grad=True)


def _grad_of(leaf):
    return leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)


def derivative(f, x):
    leaf = _fresh_leaf(x)
    f(leaf).backward()
    return _grad_of(leaf)


def partial_derivatives(f, *xs):
    leaves = [_fresh_leaf(x) for x in xs]
    f(*leaves).backward()
    return tuple(_grad_of(leaf) for leaf in leaves)


def gradient(f, x):
    leaf = _fresh_leaf(x)
    f(leaf).backward()
    return _grad_of(leaf)


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
    leaf = torch.tensor(float(x), dtype=torch.float64, requires_grad=True)
    for _ in range(times):
        f(leaf).backward()
    return leaf.grad


def zero_gradients(params):
    for p in params:
        if p.grad is not None:
            p.grad.zero_()


def fit_linear(xs, ys, steps, lr):
    w = torch.zeros((), dtype=xs.dtype, device=xs.device, requires_grad=True)
    b = torch.zeros((), dtype=xs.dtype, device=xs.device, requires_grad=True)
    for _ in range(steps):
        loss = ((w * xs + b - ys) ** 2).mean()
        zero_gradients([w, b])
        loss.backward()
        with torch.no_grad():
            w -= lr * w.grad
            b -= lr * b.grad
    return w.item(), b.item()


def numerical_gradient(f, x, eps=1e-6):
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


def check_gradient(f, x, atol=1e-5, rtol=1e-3):
    leaf = _fresh_leaf(x)
    f(leaf).backward()
    by_autograd = _grad_of(leaf)
    by_differences = numerical_gradient(f, x)
    return bool(torch.allclose(by_autograd, by_differences, atol=atol, rtol=rtol))
