"""Gradients, double backward, opcheck and torch.compile."""
import pytest
import torch

import sqish_ext
from sqish_ext.reference import sqish_reference

SCALAR = dict(alpha=0.1, beta=1.5, gamma=0.7)


def make_params(device, channels=None, requires_grad=True):
    shape = () if channels is None else (channels,)
    gen = torch.Generator().manual_seed(0)
    base = {"alpha": 0.1, "beta": 1.5, "gamma": 0.7}
    return [
        (v + 0.1 * torch.rand(shape, generator=gen, dtype=torch.float64)).to(device).requires_grad_(requires_grad)
        for v in base.values()
    ]


def inputs(device, shape=(2, 3, 4, 5), channels_last=False):
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 3
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    return x.to(device).requires_grad_()


def op(x, a, b, g):
    return torch.ops.sqish.sqish(x, a, b, g)


@pytest.mark.parametrize("per_channel", [False, True], ids=["scalar", "per_channel"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
def test_gradcheck_for_input_and_every_parameter(device, per_channel, channels_last):
    x = inputs(device, channels_last=channels_last)
    params = make_params(device, 3 if per_channel else None)
    assert torch.autograd.gradcheck(op, (x, *params))


@pytest.mark.parametrize("per_channel", [False, True], ids=["scalar", "per_channel"])
def test_gradgradcheck_for_input_and_every_parameter(device, per_channel):
    x = inputs(device, shape=(2, 3, 4))
    params = make_params(device, 3 if per_channel else None)
    assert torch.autograd.gradgradcheck(op, (x, *params))


def test_gradcheck_with_mixed_scalar_and_per_channel_parameters(device):
    x = inputs(device, shape=(4, 3))
    alpha, beta, gamma = make_params(device, None)
    beta = make_params(device, 3)[1]
    assert torch.autograd.gradcheck(op, (x, alpha, beta, gamma))


def test_gradient_penalty_trains_through_double_backward(device):
    x = inputs(device, shape=(8, 3))
    params = make_params(device, 3)
    (grad_x,) = torch.autograd.grad(op(x, *params).sum(), x, create_graph=True)
    penalty = grad_x.pow(2).sum()
    penalty.backward()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in params)


def test_parameter_gradients_come_back_in_the_parameters_dtype(device):
    x = torch.randn(4, 3, device=device, dtype=torch.bfloat16, requires_grad=True)
    params = [torch.tensor(v, device=device, requires_grad=True) for v in (0.1, 1.0, 1.0)]  # float32
    op(x, *params).float().sum().backward()
    assert x.grad.dtype == torch.bfloat16
    assert all(p.grad.dtype == torch.float32 for p in params)


def test_fixed_parameters_skip_parameter_gradients(device):
    x = inputs(device, shape=(4, 3))
    params = make_params(device, None, requires_grad=False)
    op(x, *params).sum().backward()
    assert x.grad is not None and all(p.grad is None for p in params)


def opcheck_samples(device):
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        for shape, channels in (((7,), None), ((2, 3, 4, 5), None), ((2, 3, 4, 5), 3), ((5, 4), 4), ((0, 3), 3)):
            for requires_grad in (False, True):
                x = torch.randn(shape, device=device).to(dtype).requires_grad_(requires_grad)
                yield x, *make_params(device, channels, requires_grad)
    x = torch.randn(2, 3, 4, 5, device=device).to(memory_format=torch.channels_last)
    yield x, *make_params(device, 3)


def test_opcheck_sqish_on_many_samples(device):
    for sample in opcheck_samples(device):
        torch.library.opcheck(torch.ops.sqish.sqish.default, sample)


def test_opcheck_sqish_backward_on_many_samples(device):
    for x, a, b, g in opcheck_samples(device):
        grad = torch.randn_like(x)
        for compute_param_grads in (False, True):
            torch.library.opcheck(
                torch.ops.sqish.sqish_backward.default,
                (grad, x.detach(), a.detach(), b.detach(), g.detach(), compute_param_grads),
            )


def test_opcheck_inplace_sqish(device):
    for x, a, b, g in opcheck_samples(device):
        torch.library.opcheck(
            torch.ops.sqish.sqish_.default,
            (x.detach().clone(), a.detach(), b.detach(), g.detach()),
            test_utils=("test_schema", "test_faketensor"),
        )


class SmallNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.act = sqish_ext.Sqish(learnable=True, num_parameters=8)
        self.head = torch.nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.act(self.conv(x)).mean((2, 3)))


def test_compile_fullgraph_matches_eager_forward_and_backward(device):
    torch.manual_seed(0)
    eager = SmallNet().to(device)
    compiled_model = SmallNet().to(device)
    compiled_model.load_state_dict(eager.state_dict())
    compiled = torch.compile(compiled_model, fullgraph=True)
    x = torch.randn(2, 3, 8, 8, device=device)
    torch.testing.assert_close(compiled(x), eager(x))
    compiled(x).sum().backward()
    eager(x).sum().backward()
    for (name, p), q in zip(eager.named_parameters(), compiled_model.parameters()):
        torch.testing.assert_close(q.grad, p.grad, msg=name)


def test_opcheck_float_overloads(device):
    for x, *_ in opcheck_samples(device):
        torch.library.opcheck(torch.ops.sqish.sqish.float, (x, *SCALAR.values()))
        torch.library.opcheck(torch.ops.sqish.sqish_backward.float,
                              (torch.randn_like(x), x.detach(), *SCALAR.values()))
        torch.library.opcheck(torch.ops.sqish.sqish_.float, (x.detach().clone(), *SCALAR.values()),
                              test_utils=("test_schema", "test_faketensor"))


def test_compile_fullgraph_of_float_parameters_matches_eager(device):
    x = torch.randn(4, 8, device=device, requires_grad=True)
    compiled = torch.compile(lambda t: sqish_ext.sqish(t, *SCALAR.values()), fullgraph=True)
    y = compiled(x)
    (grad,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(y, sqish_ext.sqish(x, *SCALAR.values()))
    torch.testing.assert_close(grad, torch.autograd.grad(sqish_ext.sqish(x, *SCALAR.values()).sum(), x)[0])


# ---- every subset, mixed shapes, higher orders ------------------------------------

PARAMETER_SHAPES = {"scalar": (None, None, None), "per_channel": (3, 3, 3), "mixed": (None, 3, None)}


def params_of_shapes(device, channels):
    """alpha, beta, gamma with the given channel counts (None: 0-dim), float64."""
    return [make_params(device, c)[i] for i, c in enumerate(channels)]


@pytest.mark.parametrize("shapes", PARAMETER_SHAPES.values(), ids=PARAMETER_SHAPES.keys())
@pytest.mark.parametrize("subset", range(1, 16), ids=lambda s: "".join("xabg"[i] for i in range(4) if s >> i & 1))
def test_gradcheck_for_every_subset_that_requires_grad(device, shapes, subset):
    # A parameter's gradient must come back whenever it alone requires grad.
    args = [inputs(device, shape=(2, 3, 4)), *params_of_shapes(device, shapes)]
    for i, t in enumerate(args):
        t.requires_grad_(bool(subset >> i & 1))
    assert torch.autograd.gradcheck(sqish_ext.sqish, args)


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
def test_gradgradcheck_with_mixed_scalar_and_per_channel_parameters(device, channels_last):
    x = inputs(device, shape=(2, 3, 4, 2), channels_last=channels_last)
    assert torch.autograd.gradgradcheck(sqish_ext.sqish, (x, *params_of_shapes(device, PARAMETER_SHAPES["mixed"])))


def nth_derivatives(fn, x, params, order):
    """d^k/dx^k of sum(fn(x, *params)) for k = 1..order, each differentiable."""
    result, y = [], fn(x, *params).sum()
    for _ in range(order):
        (y,) = torch.autograd.grad(y, x, create_graph=True)
        result.append(y)
        y = y.sum()
    return result


def test_third_derivative_matches_the_reference_formula(device):
    x = inputs(device, shape=(2, 3, 4))
    params = params_of_shapes(device, PARAMETER_SHAPES["mixed"])
    got = nth_derivatives(sqish_ext.sqish, x, params, 3)
    want = nth_derivatives(sqish_reference, x, params, 3)
    for order, (g, w) in enumerate(zip(got, want), 1):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12, msg=f"derivative of order {order}")


def test_float32_second_derivative_matches_float64(device):
    # float32 arithmetic in the composite double backward: a few ulps of float32.
    x = inputs(device, shape=(2, 3, 4))
    params = params_of_shapes(device, PARAMETER_SHAPES["mixed"])
    want = nth_derivatives(sqish_ext.sqish, x, params, 2)[1]
    got = nth_derivatives(sqish_ext.sqish, x.detach().float().requires_grad_(), params, 2)[1]
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_frozen_parameter_stays_while_the_others_train(device):
    module = sqish_ext.Sqish(learnable=True, num_parameters=3).to(device)
    module.log_beta.requires_grad_(False)
    before = {name: p.detach().clone() for name, p in module.named_parameters()}
    optimizer = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=0.1)
    module(torch.randn(4, 3, 5, device=device)).square().sum().backward()
    optimizer.step()
    assert module.log_beta.grad is None and torch.equal(module.log_beta, before["log_beta"])
    assert not torch.equal(module.alpha, before["alpha"]) and not torch.equal(module.gamma, before["gamma"])
