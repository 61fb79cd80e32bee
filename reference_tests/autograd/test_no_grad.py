"""Deliverable no_grad: ``predict(model, x)`` and ``sgd_step(params, lr)`` with autograd switched off.

Checked: predict's values on every device, that it returns a tensor with no graph attached, that autograd
is really off while the model runs (a probe model reports torch.is_grad_enabled()), and that predict leaves
things as it found them: the model in training mode (a probe model reports its mode, also after predict
returns) and grad mode on afterwards (the next call into the student process reads it); sgd_step's update values,
that the update is not recorded by autograd and happens in place (parameters stay the same leaf tensors that
require grad), that gradients are left as they are and parameters without a gradient are skipped.

Every assertion carries its own message, which is what the student reads; PYTEST_DONT_REWRITE keeps pytest's
assertion introspection (object reprs, memory addresses) out of it.
"""

import pytest
import torch

pytestmark = pytest.mark.deliverable("no_grad")

NO_GRAD_ADVICE = "run it inside `with torch.no_grad():`"

# A linear layer with known weights, built inside the student's process.
LINEAR_MODEL = """
model = nn.Linear(3, 2).to(device=W.device, dtype=W.dtype)
with torch.no_grad():
    model.weight.copy_(W)
    model.bias.copy_(B)
"""

# A model that reports how it was called: its output is 1 where autograd was recording, 0 where it was off.
GRAD_MODE_PROBE = """
class GradModeProbe(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return torch.full_like(x, float(torch.is_grad_enabled())) * self.scale

probe = GradModeProbe()
"""

# A model that reports its own mode: [training while forward ran, training now]. train() and eval() (which calls
# train(False)) update the second entry in place, so a mode switched after the forward pass still shows when
# predict() returns (the result is encoded only then).
MODE_PROBE = """
class ModeProbe(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.report = torch.ones(2)

    def train(self, mode=True):
        result = super().train(mode)
        self.report[1] = float(mode)
        return result

    def forward(self, x):
        self.report[0] = float(self.training)
        return self.report

probe = ModeProbe()
"""

# A model built at the start of a call, before any student code runs in it: it reads the grad mode that the
# previous call left behind. Its forward pass switches grad mode back on, so that a predict() that turned it off
# for good cannot fail the tests that run after this one in the same process.
GRAD_MODE_WITNESS = """
grad_mode_left = torch.is_grad_enabled()

class GradModeWitness(nn.Module):
    def forward(self, x):
        torch.set_grad_enabled(True)
        return torch.full_like(x, float(grad_mode_left))

witness = GradModeWitness()
"""

W = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])
B = torch.tensor([0.1, -0.2])
X = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0], [0.0, 0.0, 1.0], [2.0, -2.0, 0.5]])


def _grad_fn_name(t):
    """Name of the autograd node that produced `t`, for messages."""
    return getattr(t, "_remote_grad_fn", None) or type(t.grad_fn).__name__


@pytest.mark.points(3)
def test_predict_values(student, devices):
    """Does predict(model, x) return model(x), on x's device?"""
    for device in devices:
        model = student.code(LINEAR_MODEL, name="model", W=W.to(device), B=B.to(device))
        y = student.predict(model, X.to(device, copy=True))
        assert isinstance(y, torch.Tensor), f"predict() must return model(x), a tensor; got {type(y).__name__}"
        assert y.shape == (4, 2), f"predict() on a 4x3 input to nn.Linear(3, 2) must be 4x2, got {list(y.shape)}"
        assert y.device.type == torch.device(device).type, f"predict() on {device} returned a tensor on {y.device}"
        expected = X @ W.T + B
        got = y.detach().to("cpu", torch.float32)
        assert torch.allclose(got, expected, atol=1e-5), (
            f"predict() returned {got.tolist()}, expected model(x) = {expected.tolist()} ({device})"
        )


@pytest.mark.points(3)
def test_predict_returns_no_graph(student):
    """Is predict()'s result detached from autograd (requires_grad False, no grad_fn)?"""
    model = student.code(LINEAR_MODEL, name="model", W=W, B=B)
    y = student.predict(model, X.clone())
    assert isinstance(y, torch.Tensor), f"predict() must return model(x), a tensor; got {type(y).__name__}"
    assert not y.requires_grad and y.grad_fn is None, (
        f"graph left attached: predict() returned a tensor that requires grad (grad_fn={_grad_fn_name(y)}), "
        f"so autograd kept the whole forward graph alive; {NO_GRAD_ADVICE}"
    )


@pytest.mark.points(3)
def test_predict_runs_model_with_autograd_off(student):
    """Is autograd switched off while the model runs, rather than the graph built and then thrown away?"""
    probe = student.code(GRAD_MODE_PROBE, name="probe")
    y = student.predict(probe, torch.zeros(2, 3))
    assert isinstance(y, torch.Tensor), f"predict() must return model(x), a tensor; got {type(y).__name__}"
    assert torch.all(y.detach() == 0), (
        "autograd was recording while predict() ran the model (torch.is_grad_enabled() was True inside "
        "model.forward): building the graph and then calling .detach() wastes time and memory; "
        f"{NO_GRAD_ADVICE}"
    )


@pytest.mark.points(2)
def test_predict_leaves_the_model_in_its_mode(student):
    """Is the model still in training mode after predict() (no model.eval() left behind)?"""
    probe = student.code(MODE_PROBE, name="probe")
    y = student.predict(probe, torch.zeros(2, 3))
    assert isinstance(y, torch.Tensor) and y.shape == (2,), (
        f"predict(model, x) must return model(x) as it is; got {type(y).__name__} "
        f"{list(y.shape) if isinstance(y, torch.Tensor) else ''}"
    )
    assert y[1].item() == 1.0, (
        "model left in eval mode: predict() called model.eval() and did not switch it back, so the caller's "
        "model now behaves differently (dropout and batch norm act as in inference) when training resumes; "
        "predict() must leave the model as it found it: torch.no_grad() is all it needs "
        "(if you do call model.eval(), restore the mode afterwards with model.train(was_training))"
    )


@pytest.mark.points(2)
def test_predict_leaves_grad_mode_on(student):
    """After predict() returns, is autograd recording again (grad mode restored, not switched off for good)?"""
    model = student.code(LINEAR_MODEL, name="model", W=W, B=B)
    student.predict(model, X.clone())
    # The witness reads grad mode as the next call starts, before predict() runs again (and turns it back on).
    seen = student.predict(student.code(GRAD_MODE_WITNESS, name="witness"), torch.zeros(1))
    assert isinstance(seen, torch.Tensor) and seen.numel() == 1, (
        f"predict(model, x) must return model(x); got {type(seen).__name__}"
    )
    assert seen.item() == 1.0, (
        "grad mode was left off after predict(): it called torch.set_grad_enabled(False) (or entered a no-grad "
        "mode without leaving it), so every later backward() in the program fails with \"element 0 of tensors "
        "does not require grad\"; wrap the forward pass in `with torch.no_grad():` instead, which switches "
        "autograd back on when the block ends"
    )


def _params(device):
    """Two parameters with gradients, and the values one step of lr = 0.1 must give."""
    w = torch.tensor([[1.0, -2.0], [0.5, 3.0]], device=device, requires_grad=True)
    b = torch.tensor([0.25, -0.75], device=device, requires_grad=True)
    w.grad = torch.tensor([[0.5, 1.0], [-2.0, 0.0]], device=device)
    b.grad = torch.tensor([4.0, -1.0], device=device)
    after = [torch.tensor([[0.95, -2.1], [0.7, 3.0]]), torch.tensor([-0.15, -0.65])]
    return [w, b], after


@pytest.mark.points(2)
def test_sgd_step_values(student, devices):
    """Does sgd_step() compute p - lr·p.grad for every parameter, on any device?"""
    for device in devices:
        params, after = _params(device)
        student.sgd_step(params, 0.1)
        for name, p, expected in zip(("w", "b"), params, after, strict=True):
            got = p.detach().to("cpu")
            assert torch.allclose(got, expected, atol=1e-6), (
                f"after sgd_step(params, lr=0.1) parameter {name} is {got.tolist()}, expected "
                f"p - lr·p.grad = {expected.tolist()} ({device})"
            )


@pytest.mark.points(3)
def test_sgd_step_is_not_recorded_and_in_place(student):
    """Do parameters stay the same leaf tensors that require grad, updated in place, unseen by autograd?"""
    params, after = _params("cpu")
    w, b = params
    student.sgd_step(params, 0.1)
    for name, p in zip(("w", "b"), params, strict=True):
        assert p.is_leaf and p.grad_fn is None, (
            f"update recorded by autograd: after sgd_step() parameter {name} is no longer a leaf "
            f"(grad_fn={_grad_fn_name(p)}); update it in place, p -= lr * p.grad, {NO_GRAD_ADVICE}"
        )
        assert p.requires_grad, (
            f"after sgd_step() parameter {name} no longer requires grad: it was replaced by a new tensor; "
            f"update the parameter itself in place, p -= lr * p.grad, {NO_GRAD_ADVICE}"
        )
    for name, p, expected in zip(("w", "b"), (w, b), after, strict=True):
        assert torch.allclose(p.detach(), expected, atol=1e-6), (
            f"sgd_step() did not update parameter {name} in place (the caller's tensor still holds "
            f"{p.detach().tolist()}): change the tensor itself, p -= lr * p.grad, {NO_GRAD_ADVICE}"
        )


@pytest.mark.points(2)
def test_sgd_step_skips_missing_grads_and_keeps_grads(student):
    """Are parameters without .grad skipped, and are the gradients left as they were?"""
    w = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    w.grad = torch.tensor([0.5, -0.5], dtype=torch.float64)
    frozen = torch.tensor([5.0, 6.0], dtype=torch.float64, requires_grad=True)
    params = [w, frozen]
    student.sgd_step(params, 1.0)
    assert params[0].detach().tolist() == [0.5, 2.5], (
        f"sgd_step(params, lr=1.0) should take w from [1, 2] to [0.5, 2.5], got {params[0].detach().tolist()}"
    )
    assert frozen.detach().tolist() == [5.0, 6.0] and frozen.grad is None, (
        "a parameter whose .grad is None must be skipped: sgd_step() changed it (or gave it a gradient)"
    )
    assert w.grad is not None and w.grad.tolist() == [0.5, -0.5], (
        f"sgd_step() must leave .grad as it is (zeroing is the caller's job), but w.grad became "
        f"{None if w.grad is None else w.grad.tolist()}"
    )
