"""What one call does: float parameters reach the kernels by value, the eager
autograd path agrees with the registered one, and backward keeps only x and the
parameters."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import sqish_ext

FLOATS = (0.1, 1.5, 0.7)


class RecordOps(TorchDispatchMode):
    """Records every op that reaches the dispatcher below autograd."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func)
        return func(*args, **(kwargs or {}))


def float64_tensors(values, device):
    return [torch.tensor(v, dtype=torch.float64, device=device) for v in values]


@pytest.mark.parametrize("grad_mode", [False, True], ids=["no_grad", "grad"])
def test_float_parameters_call_the_float_overload_and_nothing_else(device, grad_mode):
    x = torch.randn(2, 3, device=device, requires_grad=grad_mode)
    with torch.set_grad_enabled(grad_mode), RecordOps() as record:
        sqish_ext.sqish(x, *FLOATS)
    assert record.ops == [torch.ops.sqish.sqish.float]


def test_fixed_module_calls_the_float_overload_and_nothing_else(device):
    x = torch.randn(2, 3, device=device)
    module = sqish_ext.Sqish(*FLOATS).to(device)
    with RecordOps() as record:
        module(x)
    assert record.ops == [torch.ops.sqish.sqish.float]


def test_backward_of_float_parameters_calls_only_the_float_backward(device):
    x = torch.randn(2, 3, device=device, requires_grad=True)
    y = sqish_ext.sqish(x, *FLOATS)
    grad = torch.ones_like(y)
    with RecordOps() as record:
        y.backward(grad)
    # The engine's own ops (accumulating x.grad) aside, backward is the one op.
    sqish_ops = [op for op in record.ops if op.namespace == "sqish"]
    assert sqish_ops == [torch.ops.sqish.sqish_backward.float]


def test_float_overload_matches_the_tensor_overload_bitwise(device):
    # Both derive the per-parameter constants in float64 from the same values.
    x = torch.randn(4, 5, device=device) * 4
    assert torch.equal(sqish_ext.sqish(x, *FLOATS), sqish_ext.sqish(x, *float64_tensors(FLOATS, device)))
    grad = torch.randn_like(x)
    got = torch.ops.sqish.sqish_backward.float(grad, x, *FLOATS)
    want = torch.ops.sqish.sqish_backward(grad, x, *float64_tensors(FLOATS, device), False)[0]
    assert torch.equal(got, want)


def test_integer_parameters_count_as_numbers(device):
    x = torch.randn(4, 5, device=device)
    assert torch.equal(sqish_ext.sqish(x, 0, 2, 1), sqish_ext.sqish(x, 0.0, 2.0, 1.0))


def test_eager_and_registered_autograd_give_the_same_gradients(device):
    # sqish_ext.sqish records through its own autograd.Function; torch.ops.sqish.sqish
    # through the rules registered with torch.library. Both run the same rules.
    x = torch.randn(3, 4, 5, device=device, dtype=torch.float64)
    params = [p.requires_grad_() for p in float64_tensors((0.1, 1.5, 0.7), device)]
    grad = torch.randn_like(x)
    results = []
    for fn in (sqish_ext.sqish, torch.ops.sqish.sqish):
        xi, pi = x.clone().requires_grad_(), [p.detach().clone().requires_grad_() for p in params]
        y = fn(xi, *pi)
        results.append((y, *torch.autograd.grad(y, (xi, *pi), grad)))
    for eager, registered in zip(*results):
        assert torch.equal(eager, registered)


def test_float_parameters_gradcheck_and_gradgradcheck(device):
    x = torch.randn(3, 4, device=device, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: sqish_ext.sqish(t, *FLOATS), (x,))
    assert torch.autograd.gradgradcheck(lambda t: sqish_ext.sqish(t, *FLOATS), (x,))


def saved_tensors_of_forward(fn, *args):
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = fn(*args)
    return y, saved


@pytest.mark.parametrize("per_channel", [False, True], ids=["scalar", "per-channel"])
def test_backward_saves_only_x_and_the_parameters(device, per_channel):
    x = torch.randn(8, 16, 5, 5, device=device, requires_grad=True)
    shape = (16,) if per_channel else ()
    params = [torch.full(shape, v, device=device, requires_grad=True) for v in FLOATS]
    y, saved = saved_tensors_of_forward(sqish_ext.sqish, x, *params)
    assert sum(t.nbytes for t in saved) == x.nbytes + sum(p.nbytes for p in params)
    assert all(t.data_ptr() != y.data_ptr() for t in saved)


def test_backward_of_float_parameters_saves_only_x(device):
    x = torch.randn(8, 16, 5, 5, device=device, requires_grad=True)
    y, saved = saved_tensors_of_forward(sqish_ext.sqish, x, *FLOATS)
    assert [t.data_ptr() for t in saved] == [x.data_ptr()] and saved[0].nbytes == x.nbytes


def test_negative_float_beta_is_a_value_error_from_the_op_itself(device):
    with pytest.raises(RuntimeError, match=r"beta must be >= 0"):
        torch.ops.sqish.sqish.float(torch.randn(3, device=device), 0.1, -0.5, 1.0)
    with pytest.raises(ValueError, match=r"beta must be >= 0"):
        sqish_ext.sqish(torch.randn(3, device=device), 0.1, -0.5, 1.0)
