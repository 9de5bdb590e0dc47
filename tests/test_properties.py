"""Property-based tests over shapes, strides, dtypes, parameter values and special inputs."""
import math

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import oracle, rounding_bound
from sqish_ext.reference import sqish_partials, sqish_reference

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAX_CHANNELS = 70  # past four AVX-512 float32 vectors, with a tail


@st.composite
def problems(draw, dtypes=DTYPES):
    """(x, alpha, beta, gamma): x of dtype in one of several layouts, non-empty 19
    times in 20; float64 parameters, scalar or per channel, some with β = 0."""
    ndim = draw(st.integers(1, 4))
    shape = [draw(st.integers(1, MAX_CHANNELS if d == 1 else 5)) for d in range(ndim)]
    if draw(st.integers(0, 19)) == 0:
        shape[draw(st.integers(0, ndim - 1))] = 0
    dtype = draw(st.sampled_from(dtypes))
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.sampled_from([1.0, 10.0, 100.0]))
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale
    view = draw(st.sampled_from(["contiguous", "transpose", "slice", "flip_stride"] + (["channels_last"] if ndim == 4 else [])))
    if view == "transpose" and ndim >= 2:
        x = x.transpose(0, -1).contiguous().transpose(0, -1)
    elif view == "slice":
        x = torch.cat([x, x], dim=-1)[..., ::2]
    elif view == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    elif view == "flip_stride" and ndim >= 2:
        x = x.transpose(0, 1)
    per_channel = ndim >= 2 and draw(st.booleans())
    channels = x.size(1) if per_channel else None

    def param(values):
        if channels is None:
            return torch.tensor(draw(values), dtype=torch.float64)
        return torch.tensor(draw(st.lists(values, min_size=channels, max_size=channels)), dtype=torch.float64)

    log_uniform = st.floats(math.log(1e-4), math.log(1e6)).map(math.exp)
    # β = 0 in one problem of five, then on about a quarter of its channels.
    with_zeros = draw(st.integers(0, 4)) == 0
    beta_values = st.integers(0, 3).flatmap(lambda i: st.just(0.0) if with_zeros and i == 0 else log_uniform)
    alpha, beta, gamma = param(st.floats(-0.5, 1.5)), param(beta_values), param(st.floats(-3.0, 3.0))
    return x.to(dtype), alpha, beta, gamma


def input_gradient(x, alpha, beta, gamma):
    return sqish_partials(x, alpha, beta, gamma).df_dx


@SETTINGS
@given(problems())
def test_forward_and_input_gradient_are_within_rounding_of_float64(problem):
    x, alpha, beta, gamma = problem
    x64 = x.double()
    got_f = torch.ops.sqish.sqish(x, alpha, beta, gamma)
    got_dx = torch.ops.sqish.sqish_backward(torch.ones_like(x), x, alpha, beta, gamma, False)[0]
    for got, fn in ((got_f, sqish_reference), (got_dx, input_gradient)):
        want = fn(x64, alpha, beta, gamma)
        # A want beyond dtype's range is an overflow the kernels must give as ±inf too.
        finite = want.abs() <= torch.finfo(x.dtype).max
        error = (got.double() - want).abs()
        assert (error[finite] <= rounding_bound(x.dtype, fn, x64, [alpha, beta, gamma])[finite]).all()
        assert torch.equal(got.double()[~finite], want[~finite].sign() * math.inf)


@SETTINGS
@given(problems(dtypes=[torch.float64]))
def test_float64_parameter_gradients_match_the_oracle(problem):
    x, alpha, beta, gamma = problem
    grad = torch.randn(x.shape, dtype=torch.float64)
    _, ga, gb, gg = torch.ops.sqish.sqish_backward(grad, x, alpha, beta, gamma, True)
    want = oracle(x, alpha, beta, gamma)
    dims = [d for d in range(x.dim()) if not (alpha.dim() == 1 and d == 1)]
    for got, name in ((ga, "df_dalpha"), (gb, "df_dbeta"), (gg, "df_dgamma")):
        terms = grad * want[name]
        expected = terms.sum(dims)
        # At β = 0, ∂f/∂β grows like e^(k|x|) and may overflow (the true value): a
        # non-finite sum must come back non-finite, and the finite ones are compared.
        finite = expected.isfinite()
        assert not got[~finite].isfinite().any()
        got, expected, terms = got[finite], expected[finite], terms.masked_fill(~terms.isfinite(), 0)
        # Float64 sums: a few roundings of the sum of the terms' magnitudes.
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9 * (1 + terms.abs().sum().item()))


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
@given(problems(), st.data())
def test_special_inputs_change_only_their_own_elements(problem, data):
    # NaN, ±inf and ±max placed anywhere: each of their elements is its own (NaN
    # stays NaN), and every other element is what it is without them, bit for bit:
    # no vector lane, tail or reduction mixes elements.
    x, alpha, beta, gamma = problem
    if x.numel() == 0:
        return
    specials = torch.tensor([math.nan, math.inf, -math.inf, torch.finfo(x.dtype).max, -torch.finfo(x.dtype).max],
                            dtype=x.dtype)
    flat = data.draw(st.lists(st.integers(0, x.numel() - 1), min_size=1, max_size=8, unique=True))
    which = data.draw(st.lists(st.integers(0, len(specials) - 1), min_size=len(flat), max_size=len(flat)))
    mask = torch.zeros(x.numel(), dtype=torch.bool)
    mask[flat] = True
    mask = mask.reshape(x.shape)
    values = torch.zeros(x.numel(), dtype=x.dtype)
    values[flat] = specials[which]
    special_x = torch.where(mask, values.reshape(x.shape), x)  # x's layout: where keeps the strides of x
    clean_x = torch.where(mask, torch.zeros((), dtype=x.dtype), x)
    for op in (lambda t: torch.ops.sqish.sqish(t, alpha, beta, gamma),
               lambda t: torch.ops.sqish.sqish_backward(torch.ones_like(t), t, alpha, beta, gamma, False)[0]):
        with_specials, without = op(special_x), op(clean_x)
        assert torch.equal(with_specials[~mask], without[~mask])
        assert with_specials[special_x.isnan()].isnan().all()


@SETTINGS
@given(problems())
def test_finite_inputs_give_finite_outputs(problem):
    x, alpha, beta, gamma = problem
    grad = torch.ones_like(x)
    outputs = [torch.ops.sqish.sqish(x, alpha, beta, gamma)]
    grad_x, *param_grads = torch.ops.sqish.sqish_backward(grad, x, alpha, beta, gamma, True)
    outputs += [grad_x, param_grads[0], param_grads[2]]
    if not (beta == 0).any():  # ∂f/∂β at β = 0 may overflow (see above)
        outputs.append(param_grads[1])
    assert all(o.isfinite().all() for o in outputs)


@SETTINGS
@given(problems())
def test_per_channel_parameters_with_equal_values_equal_scalar_parameters(problem):
    x, alpha, beta, gamma = problem
    if x.dim() < 2 or alpha.dim() == 1:
        return
    broadcast = [p.expand(x.size(1)) for p in (alpha, beta, gamma)]
    assert torch.equal(torch.ops.sqish.sqish(x, *broadcast), torch.ops.sqish.sqish(x, alpha, beta, gamma))
