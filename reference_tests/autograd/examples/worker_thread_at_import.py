# expect: simple_gradients=20 multivariate_gradients=20 no_grad=20 zeroing_gradients=20 gradient_checking=20
"""The reference solution whose derivative() runs on a worker thread it starts at import. Correct, so 100:
a test must see the submission as its import left it, threads included, not a fork in which that thread is
missing (its calls would wait forever)."""
import concurrent.futures

import torch

# One worker thread, started at import, does derivative()'s work.
_pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
_pool.submit(int).result()


def _fresh_leaf(x):
    """A new leaf tensor that requires grad, holding the value of ``x`` (the caller's tensor is untouched).

    A Python number becomes a CPU float32 tensor; a tensor keeps its dtype and device.
    """
    if isinstance(x, torch.Tensor):
        return x.detach().clone().requires_grad_(True)
    return torch.tensor(float(x), dtype=torch.float32, requires_grad=True)


def _grad_of(leaf):
    """The leaf's gradient; zeros when the function did not depend on it (autograd leaves None then)."""
    return leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)


# ---------------------------------------------------------------------------------------------------------
# Deliverable 1: simple_gradients
# ---------------------------------------------------------------------------------------------------------


def _derivative(f, x):
    """Return the derivative df/dx at ``x``, computed with autograd.

    Args:
        f: a function that maps a 0-dim tensor to a 0-dim tensor, written with torch operations
            (for example ``lambda x: x**2 + 3*x + 1`` or ``torch.sin``).
        x: the point, a Python float or a 0-dim floating-point tensor on any device.

    Returns:
        A 0-dim tensor holding f'(x). It has the dtype and device of ``x`` (``float32`` on the CPU when ``x``
        is a Python float). The caller's ``x`` is left exactly as it was.

    Example:
        >>> derivative(lambda x: x**2 + 3*x + 1, 2.0)
        tensor(7.)
        >>> derivative(lambda x: x**3 + 2*x, 2.0)
        tensor(14.)

    Hint: make a leaf tensor that requires grad, evaluate ``f`` on it, call ``.backward()`` on the result,
    then read the leaf's ``.grad``.
    """
    leaf = _fresh_leaf(x)
    f(leaf).backward()
    return _grad_of(leaf)


# ---------------------------------------------------------------------------------------------------------
# Deliverable 2: multivariate_gradients
# ---------------------------------------------------------------------------------------------------------


def partial_derivatives(f, *xs):
    """Return the partial derivatives of a scalar function of several scalars.

    Args:
        f: a function of ``len(xs)`` 0-dim tensors returning a 0-dim tensor.
        *xs: the point, each coordinate a Python float or a 0-dim floating-point tensor.

    Returns:
        A tuple with one 0-dim tensor per input, in the order of ``xs``: ``(df/dx0, df/dx1, ...)``.
        Each has the dtype and device of its own input (``float32`` on the CPU for a Python float).

    Example:
        >>> partial_derivatives(lambda x, y: x**2 * y, 3.0, 2.0)
        (tensor(12.), tensor(9.))
    """
    leaves = [_fresh_leaf(x) for x in xs]
    f(*leaves).backward()
    return tuple(_grad_of(leaf) for leaf in leaves)


def gradient(f, x):
    """Return the gradient of a scalar function of a tensor.

    Args:
        f: a function mapping a tensor shaped like ``x`` to a 0-dim tensor.
        x: a floating-point tensor of any shape, on any device.

    Returns:
        df/dx, a tensor with the shape, dtype and device of ``x``. The caller's ``x`` is left unchanged.

    Example:
        >>> gradient(lambda x: (x**2).sum(), torch.tensor([1.0, -2.0, 3.0]))
        tensor([ 2., -4.,  6.])
    """
    leaf = _fresh_leaf(x)
    f(leaf).backward()
    return _grad_of(leaf)


def vector_jacobian_product(f, x, v):
    """Return the vector-Jacobian product vᵀJ of ``f`` at ``x``.

    When ``y = f(x)`` is not a scalar, ``y.backward()`` needs to be told how to weigh each element of ``y``:
    ``y.backward(v)`` leaves the sum over i of ``v[i] * d y[i] / d x`` in ``x.grad``. That is vᵀJ, where J is
    the Jacobian of f at x.

    Args:
        f: a function mapping a tensor shaped like ``x`` to a tensor of any shape.
        x: a floating-point tensor of any shape, on any device.
        v: a tensor with the shape of ``f(x)`` (and its dtype and device).

    Returns:
        vᵀJ, a tensor with the shape, dtype and device of ``x``. The caller's ``x`` is left unchanged.

    Example:
        >>> vector_jacobian_product(lambda x: x**2, torch.tensor([1.0, 2.0]), torch.tensor([1.0, 10.0]))
        tensor([ 2., 40.])
    """
    leaf = _fresh_leaf(x)
    f(leaf).backward(v)
    return _grad_of(leaf)


# ---------------------------------------------------------------------------------------------------------
# Deliverable 3: no_grad
# ---------------------------------------------------------------------------------------------------------


def predict(model, x):
    """Run ``model`` on ``x`` for inference, without building an autograd graph.

    Args:
        model: a callable such as a ``torch.nn.Module`` whose parameters require grad.
        x: the input tensor.

    Returns:
        ``model(x)``, computed while autograd is switched off, so that the result's ``requires_grad`` is
        False and no graph is recorded (computing with the graph and then calling ``.detach()`` does not
        count: the point is to never record it). Leave everything as you found it: the model in its mode (no
        ``.eval()`` left behind, no new weights) and autograd on again once ``predict`` returns (use
        ``with torch.no_grad():``, not ``torch.set_grad_enabled(False)``).
    """
    with torch.no_grad():
        return model(x)


def sgd_step(params, lr):
    """Take one step of plain gradient descent, in place.

    For every tensor ``p`` in ``params`` whose ``p.grad`` is not None, do ``p -= lr * p.grad`` without
    autograd recording the update. Afterwards each parameter is still the same tensor object, still a leaf
    that requires grad. Gradients are left as they are (zeroing them is the caller's business).
    Parameters whose ``.grad`` is None are skipped.

    Args:
        params: a list of leaf tensors that require grad (they may live on any device).
        lr: the learning rate, a Python float.

    Returns:
        None: the parameters themselves are updated.
    """
    with torch.no_grad():
        for p in params:
            if p.grad is not None:
                p -= lr * p.grad


# ---------------------------------------------------------------------------------------------------------
# Deliverable 4: zeroing_gradients
# ---------------------------------------------------------------------------------------------------------


def accumulated_gradient(f, x, times):
    """Show that ``.backward()`` adds to ``.grad`` instead of replacing it.

    Make one fresh leaf tensor at ``x``, then run the forward pass ``f(leaf)`` and ``.backward()`` ``times``
    times in a row *without* zeroing the gradient in between.

    Args:
        f: a function mapping a 0-dim tensor to a 0-dim tensor.
        x: the point, a Python float (so the leaf is a CPU ``float32`` tensor).
        times: how many forward and backward passes to run, an int >= 1.

    Returns:
        The leaf's ``.grad`` after the last pass, a 0-dim tensor equal to ``times * f'(x)``.

    Example:
        >>> accumulated_gradient(lambda x: x**2 + 3*x + 1, 2.0, 3)
        tensor(21.)
    """
    leaf = _fresh_leaf(x)
    for _ in range(times):
        f(leaf).backward()  # each backward() adds f'(x) to leaf.grad
    return _grad_of(leaf)


def zero_gradients(params):
    """Zero the gradients of ``params`` in place, as ``optimizer.zero_grad(set_to_none=False)`` would.

    Every tensor in ``params`` whose ``.grad`` is not None gets that gradient filled with zeros, in place
    (same shape, dtype and device). A ``.grad`` that is None stays None. Parameter values do not change.

    Args:
        params: a list of leaf tensors that require grad.

    Returns:
        None.
    """
    for p in params:
        if p.grad is not None:
            p.grad.zero_()


def fit_linear(xs, ys, steps, lr):
    """Fit ``y = w * x + b`` by plain gradient descent on the mean squared error.

    Start from ``w = b = 0``: two 0-dim leaf tensors that require grad, with the dtype and device of ``xs``.
    Then repeat ``steps`` times:

    1. compute the loss ``mean((w * xs + b - ys) ** 2)``;
    2. zero the gradients of ``w`` and ``b`` (they would accumulate otherwise), then call ``.backward()``;
    3. update ``w -= lr * w.grad`` and ``b -= lr * b.grad`` without autograd recording it.

    Args:
        xs: 1-D floating-point tensor of inputs, on any device.
        ys: 1-D tensor of targets, same length, dtype and device as ``xs``.
        steps: the number of updates, an int >= 0.
        lr: the learning rate, a Python float.

    Returns:
        ``(w, b)`` as Python floats, after exactly ``steps`` updates.

    Example:
        >>> xs = torch.tensor([0.0, 1.0, 2.0, 3.0])
        >>> fit_linear(xs, 2 * xs - 1, steps=1000, lr=0.05)   # close to (2.0, -1.0)
    """
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


# ---------------------------------------------------------------------------------------------------------
# Deliverable 5: gradient_checking
# ---------------------------------------------------------------------------------------------------------


def numerical_gradient(f, x, eps=1e-6):
    """Estimate the gradient of a scalar function by central differences, without autograd.

    For every element i of ``x`` (in any shape), with eᵢ the tensor that is 1 at element i and 0 elsewhere::

        grad[i] = (f(x + eps * eᵢ) - f(x - eps * eᵢ)) / (2 * eps)

    Central differences are accurate to O(eps²); a one-sided difference (f(x + eps·eᵢ) - f(x)) / eps is
    only accurate to O(eps), which is not good enough here.

    Args:
        f: a function mapping a tensor shaped like ``x`` to a 0-dim tensor (or a Python float).
        x: a floating-point tensor of any shape, on any device; use ``float64``: with ``float32`` and a
            small ``eps`` the differences drown in rounding error.
        eps: the step, a Python float.

    Returns:
        The estimate, a tensor with the shape, dtype and device of ``x``. The caller's ``x`` is left
        unchanged (perturb a copy, not ``x`` itself).
    """
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
    """Check autograd's gradient of ``f`` at ``x`` against finite differences.

    Compute the gradient with autograd (as ``gradient`` does) and the estimate ``numerical_gradient(f, x)``
    (default ``eps``), and compare them element by element, as ``torch.allclose`` does:
    ``|autograd - numerical| <= atol + rtol * |numerical|``.

    This is how you test a hand-written ``torch.autograd.Function``: if its ``backward`` is wrong, the
    autograd gradient disagrees with the numerical one.

    Args:
        f: a function mapping a tensor shaped like ``x`` to a 0-dim tensor.
        x: a ``float64`` tensor of any shape, on any device. The caller's ``x`` is left unchanged.
        atol: absolute tolerance.
        rtol: relative tolerance.

    Returns:
        A Python bool: True if every element matches within the tolerances, False otherwise.
    """
    leaf = _fresh_leaf(x)
    f(leaf).backward()
    by_autograd = _grad_of(leaf)
    by_differences = numerical_gradient(f, x)
    return bool(torch.allclose(by_autograd, by_differences, atol=atol, rtol=rtol))


def derivative(f, x):
    """d f / d x at ``x``, computed on the module's worker thread."""
    return _pool.submit(_derivative, f, x).result()
