"""Special cases, non-finite inputs and determinism."""
import pytest
import torch
import torch.nn.functional as F

import sqish_ext
from conftest import oracle


def test_silu_is_the_case_alpha_0_beta_1_gamma_half(device):
    x = torch.linspace(-30, 30, 10001, dtype=torch.float64, device=device)
    # Both sides are a few float64 roundings of the same function.
    torch.testing.assert_close(sqish_ext.sqish(x, 0.0, 1.0, 0.5), F.silu(x), rtol=4 * 2.0**-52, atol=1e-300)


def test_silu_case_in_float32_agrees_with_silu_to_a_few_ulps(device):
    x = torch.linspace(-30, 30, 10001, device=device)
    torch.testing.assert_close(sqish_ext.sqish(x, 0.0, 1.0, 0.5), F.silu(x), rtol=4 * 2.0**-23, atol=1e-37)


def test_alpha_1_is_the_identity(device):
    x = torch.randn(1000, dtype=torch.float64, device=device) * 10
    assert torch.equal(sqish_ext.sqish(x, 1.0, 3.0, 2.0), x)


def test_large_gamma_approaches_max_of_alpha_x_and_x(device):
    x = torch.linspace(-5, 5, 1001, dtype=torch.float64, device=device)
    target = torch.maximum(0.1 * x, x)
    gap = (sqish_ext.sqish(x, 0.1, 1.0, 1e4) - target).abs().max()
    # Largest gap of the smooth max is near x = 0: about ln 2 / (2γ(1−α)) scaled by (1−α)·|x|.
    assert gap < 1e-3


def test_minimum_of_the_non_monotonic_dip(device):
    x = torch.linspace(-2, 0, 20001, dtype=torch.float64, device=device)
    y = sqish_ext.sqish(x, 0.0, 1.0, 1.0)
    assert abs(y.min().item() - (-0.139)) < 1e-3
    assert abs(x[y.argmin()].item() - (-0.64)) < 0.01


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_finite_inputs_give_finite_outputs_and_gradients(device, dtype):
    info = torch.finfo(dtype)
    x = torch.tensor([info.max, -info.max, info.tiny, -info.tiny, 0.0, -0.0, 1e4, -1e4], dtype=dtype, device=device)
    x = torch.cat([x, torch.randn(100, device=device).to(dtype) * 50]).requires_grad_()
    # float64 parameters: ∂L/∂α sums terms as large as x itself, which float32
    # could not hold for float64's largest inputs.
    params = [torch.tensor(v, dtype=torch.float64, device=device, requires_grad=True) for v in (0.01, 1.0, 1.0)]
    y = torch.ops.sqish.sqish(x, *params)
    y.backward(torch.ones_like(y))
    # f(±max) = ±max·(a gate factor ≤ 1) stays finite, and so does each gradient.
    assert y.isfinite().all()
    assert x.grad.isfinite().all()
    assert all(p.grad.isfinite() for p in params)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_nan_propagates_to_every_output(device, dtype):
    x = torch.tensor([float("nan"), 1.0], dtype=dtype, device=device, requires_grad=True)
    params = [torch.tensor(v, device=device, requires_grad=True) for v in (0.01, 1.0, 1.0)]
    y = torch.ops.sqish.sqish(x, *params)
    y.sum().backward()
    assert y[0].isnan() and not y[1].isnan()
    assert x.grad[0].isnan()
    assert all(p.grad.isnan() for p in params)


@pytest.mark.parametrize("alpha", [0.0, 0.2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_infinite_inputs_give_the_limits(device, alpha, dtype):
    x = torch.tensor([float("inf"), float("-inf")], dtype=dtype, device=device)
    y = sqish_ext.sqish(x, alpha, 1.0, 1.0)
    # f(+∞) = +∞; f(−∞) = α·(−∞), which is 0 for α = 0 (torch's silu gives NaN there).
    assert y[0].item() == float("inf")
    assert y[1].item() == (float("-inf") if alpha > 0 else 0.0)


def test_infinite_inputs_give_the_limits_of_the_input_gradient(device):
    x = torch.tensor([float("inf"), float("-inf")], device=device, requires_grad=True)
    sqish_ext.sqish(x, 0.2, 1.0, 1.0).sum().backward()
    # ∂f/∂x → 1 at +∞ and → α at −∞.
    torch.testing.assert_close(x.grad, torch.tensor([1.0, 0.2], device=device))


def test_beta_0_is_the_identity(device):
    x = torch.randn(100, device=device, dtype=torch.float64)
    assert torch.equal(sqish_ext.sqish(x, 0.3, 0.0, 2.0), x)


@pytest.mark.parametrize("layout", ["shared", "per_channel", "per_channel_channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_beta_gradient_at_beta_0_is_its_limit(device, dtype, layout):
    # At β = 0 the closed form's x·s·(1−s)/β is 0/0; its limit is x·e^(−kx) (docs/math.md).
    torch.manual_seed(5)
    x = (torch.randn(4, 6, 5, 7, device=device) * 2).to(dtype)
    if layout == "shared":
        beta = torch.tensor(0.0, dtype=torch.float64, device=device)
    else:
        beta = torch.tensor([0.0, 0.5, 0.0, 1.0, 2.0, 0.0], dtype=torch.float64, device=device)
    if layout == "per_channel_channels_last":
        x = x.to(memory_format=torch.channels_last)
    alpha, gamma = torch.full_like(beta, 0.1), torch.full_like(beta, 1.0)
    grad = torch.randn(x.shape, device=device).to(dtype)
    got = torch.ops.sqish.sqish_backward(grad, x, alpha, beta, gamma, True)[2]
    terms = grad.double() * oracle(x, alpha, beta, gamma)["df_dbeta"]
    dims = [0, 1, 2, 3] if layout == "shared" else [0, 2, 3]
    # Float64 is exact to a few roundings of the sum. Otherwise each term is a handful
    # of float32 roundings (8 cover it) and joins a float32 sum of at most 140
    # (a channel's elements) before float64: (8 + 140)·ε32 of the terms' magnitudes.
    eps = 16 * 2.0**-52 if dtype == torch.float64 else (8 + 140) * 2.0**-24
    assert ((got.double() - terms.sum(dims)).abs() <= eps * terms.abs().sum(dims)).all()
    assert got.isfinite().all()


def test_negative_gamma_matches_the_oracle(device):
    x = torch.linspace(-20, 20, 2001, dtype=torch.float64, device=device)
    torch.testing.assert_close(sqish_ext.sqish(x, 0.1, 1.0, -1.0), oracle(x, 0.1, 1.0, -1.0)["f"])


def run_training_step(device, dtype, channels):
    torch.manual_seed(3)
    x = (torch.randn(64, channels, 33, 17, device=device) * 4).to(dtype).requires_grad_()
    shape = (channels,) if channels > 1 else ()
    params = [torch.full(shape, v, device=device, requires_grad=True) for v in (0.01, 1.0, 1.0)]
    y = torch.ops.sqish.sqish(x, *params)
    y.backward(torch.randn_like(y))
    return [y, x.grad] + [p.grad for p in params]


@pytest.mark.parametrize("channels", [1, 8], ids=["scalar", "per_channel"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_results_are_bitwise_reproducible(device, dtype, channels):
    first, second = run_training_step(device, dtype, channels), run_training_step(device, dtype, channels)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_parameter_gradients_do_not_depend_on_the_thread_count():
    # The CPU reduction's order is fixed by the tensor size and thread count only;
    # with one thread it is a single ordered sweep, and so must agree closely.
    # Both counts are forced: on a one-core machine the default would make this vacuous.
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = run_training_step("cpu", torch.float32, 8)
        torch.set_num_threads(2)
        multi = run_training_step("cpu", torch.float32, 8)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(single[0], multi[0]) and torch.equal(single[1], multi[1])
    for a, b in zip(single[2:], multi[2:]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_large_parameter_gradient_sums_match_float64(device):
    # Each parameter's gradient is a float32 sum of 2^21 terms, kept in float32 for
    # at most 4096 elements over 8 lanes (so at most 512 + 8 roundings deep) and
    # then in float64: the error is at most 520·ε32 times the sum of the terms'
    # magnitudes, bounded here with |x(1−s)| ≤ |x| and s(1−s) ≤ 1/4.
    torch.manual_seed(4)
    alpha, beta, gamma = 0.01, 1.0, 1.0
    k = 2 * gamma * (1 - alpha)
    x = torch.randn(2**21, device=device) * 3
    g = torch.randn_like(x)
    params = [torch.tensor(v, device=device) for v in (alpha, beta, gamma)]
    got = torch.ops.sqish.sqish_backward(g, x, *params, True)[1:]
    want = torch.ops.sqish.sqish_backward(g.double(), x.double(), *params, True)[1:]
    gx, gx2 = (g.abs() * x.abs()).double().sum(), (g.abs() * x * x).double().sum()
    magnitudes = [gx + k * gx2 / 4, (1 - alpha) / beta * gx / 4, 2 * (1 - alpha) ** 2 * gx2 / 4]
    for a, b, magnitude in zip(got, want, magnitudes):
        assert (a.double() - b).abs() <= 520 * 2.0**-24 * magnitude
