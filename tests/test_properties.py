"""Property-based tests over shapes, strides, dtypes and parameter values."""
import math

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import oracle

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def problems(draw, dtypes=DTYPES):
    ndim = draw(st.integers(1, 4))
    shape = draw(st.lists(st.integers(0, 9), min_size=ndim, max_size=ndim))
    dtype = draw(st.sampled_from(dtypes))
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.sampled_from([1.0, 10.0, 100.0]))
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale
    view = draw(st.sampled_from(["contiguous", "transpose", "slice", "flip_stride"] + (["channels_last"] if ndim == 4 else [])))
    if view == "transpose" and ndim >= 2:
        x = x.transpose(0, -1).contiguous().transpose(0, -1)
    elif view == "slice":
        x = x[..., ::2]
    elif view == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    elif view == "flip_stride" and ndim >= 2:
        x = x.transpose(0, 1)
    per_channel = ndim >= 2 and draw(st.booleans())
    channels = x.size(1) if per_channel else None

    def param(low, high, log=False):
        values = st.floats(low, high) if not log else st.floats(math.log(low), math.log(high)).map(math.exp)
        if channels is None:
            return torch.tensor(draw(values), dtype=torch.float64)
        return torch.tensor(draw(st.lists(values, min_size=channels, max_size=channels)), dtype=torch.float64)

    alpha, beta, gamma = param(-0.5, 1.5), param(1e-3, 1e3, log=True), param(-3.0, 3.0)
    return x.to(dtype), alpha, beta, gamma


@SETTINGS
@given(problems(dtypes=[torch.float64]))
def test_float64_forward_and_backward_match_the_oracle(problem):
    x, alpha, beta, gamma = problem
    grad = torch.randn(x.shape, dtype=torch.float64)
    gx, ga, gb, gg = torch.ops.sqish.sqish_backward(grad, x, alpha, beta, gamma, True)
    want = oracle(x, alpha, beta, gamma)
    # A few float64 roundings; absolute where a value crosses zero.
    tol = dict(rtol=1e-10, atol=1e-12 * (1 + x.abs().max().item() if x.numel() else 1) ** 2)
    torch.testing.assert_close(torch.ops.sqish.sqish(x, alpha, beta, gamma), want["f"], **tol)
    torch.testing.assert_close(gx, grad * want["df_dx"], **tol)
    dims = [d for d in range(x.dim()) if not (alpha.dim() == 1 and d == 1)]
    for got, name in ((ga, "df_dalpha"), (gb, "df_dbeta"), (gg, "df_dgamma")):
        terms = grad * want[name]
        torch.testing.assert_close(got, terms.sum(dims), rtol=1e-9, atol=1e-9 * (1 + terms.abs().sum().item()))


@SETTINGS
@given(problems())
def test_results_do_not_depend_on_the_memory_layout(problem):
    x, alpha, beta, gamma = problem
    y = torch.ops.sqish.sqish(x, alpha, beta, gamma)
    assert torch.equal(y, torch.ops.sqish.sqish(x.contiguous(), alpha, beta, gamma))
    grad = torch.ones_like(x)
    gx = torch.ops.sqish.sqish_backward(grad, x, alpha, beta, gamma, False)[0]
    assert torch.equal(gx, torch.ops.sqish.sqish_backward(grad.contiguous(), x.contiguous(), alpha, beta, gamma, False)[0])


@SETTINGS
@given(problems())
def test_finite_inputs_give_finite_outputs(problem):
    x, alpha, beta, gamma = problem
    grad = torch.ones_like(x)
    outputs = [torch.ops.sqish.sqish(x, alpha, beta, gamma)]
    outputs += list(torch.ops.sqish.sqish_backward(grad, x, alpha, beta, gamma, True))
    assert all(o.isfinite().all() for o in outputs)


@SETTINGS
@given(problems())
def test_per_channel_parameters_with_equal_values_equal_scalar_parameters(problem):
    x, alpha, beta, gamma = problem
    if x.dim() < 2 or alpha.dim() == 1:
        return
    broadcast = [p.expand(x.size(1)) for p in (alpha, beta, gamma)]
    assert torch.equal(torch.ops.sqish.sqish(x, *broadcast), torch.ops.sqish.sqish(x, alpha, beta, gamma))
