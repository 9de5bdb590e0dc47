"""float32, bfloat16 and float16 against float64, with per-channel parameters away
from the SiLU point (α ≠ 0, β ≠ 1, a different value on each of 37 channels: more
than two AVX-512 float32 vectors and a tail), in NCHW and channels_last.

The reference is sqish_ext.reference in float64 at the same x and the same
parameter values (those the kernels read), so the only error left is the kernels'
arithmetic and, for the half types, the one rounding of the result.
"""
import pytest
import torch

import sqish_ext
from sqish_ext.reference import along_channels, sqish_partials, sqish_reference

CHANNELS = 37
LAYOUTS = {"NCHW": torch.contiguous_format, "channels_last": torch.channels_last}
EPS = {dtype: torch.finfo(dtype).eps for dtype in (torch.float32, torch.bfloat16, torch.float16)}


def channel_parameters(device):
    """α ∈ [−0.1, 0.4], β ∈ [0.2, 5] (log-spaced), γ ∈ [0.3, 3], shuffled so that
    neighbouring channels differ."""
    order = torch.randperm(CHANNELS, generator=torch.Generator().manual_seed(0))
    alpha = torch.linspace(-0.1, 0.4, CHANNELS)
    beta = torch.logspace(torch.log10(torch.tensor(0.2)), torch.log10(torch.tensor(5.0)), CHANNELS)
    gamma = torch.linspace(0.3, 3.0, CHANNELS)
    return [p[order].to(device) for p in (alpha, beta, gamma)]


def sample(dtype, layout, device):
    x = torch.randn(3, CHANNELS, 5, 7, generator=torch.Generator().manual_seed(1)) * 4
    return x.to(device=device, dtype=dtype).contiguous(memory_format=LAYOUTS[layout])


def sensitivity(fn, x64, params64):
    """|x ∂v/∂x| + |α ∂v/∂α| + |γ ∂v/∂γ| + (1 + |ln β|)·|β ∂v/∂β| per element, v = fn:
    how far one relative rounding of x or of a coefficient moves v (float64 autograd,
    parameters expanded per element)."""
    x = x64.clone().requires_grad_()
    expanded = [along_channels(p, x64).expand_as(x64).clone().requires_grad_() for p in params64]
    grads = torch.autograd.grad(fn(x, *expanded).sum(), [x, *expanded])
    a, b, g = expanded
    return ((x * grads[0]).abs() + (a * grads[1]).abs() + (g * grads[3]).abs()
            + (1 + b.log().abs()) * (b * grads[2]).abs()).detach()


def tolerance(dtype, want, sens):
    """Kernel arithmetic is float32 for every one of these dtypes: 8 roundings of
    float32 (ε = 2^-23 each, propagated through the sensitivity) for the handful of
    operations. The half types then round once to dtype: ε of dtype relative to the
    value bounds that (half an ulp, plus a float32 error that may cross a rounding
    boundary). The floor is dtype's smallest normal, below which ulps are absolute."""
    bound = 8 * EPS[torch.float32] * (want.abs() + sens)
    if dtype != torch.float32:
        bound = bound + EPS[dtype] * want.abs()
    return bound + torch.finfo(dtype).tiny


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_forward_is_within_rounding_of_float64(device, dtype, layout):
    x, params = sample(dtype, layout, device), channel_parameters(device)
    x64, params64 = x.double(), [p.double() for p in params]
    want = sqish_reference(x64, *params64)
    error = (sqish_ext.sqish(x, *params).double() - want).abs()
    bound = tolerance(dtype, want, sensitivity(sqish_reference, x64, params64))
    assert (error <= bound).all(), (error / bound).max()


def input_gradient(x, alpha, beta, gamma):
    return sqish_partials(x, alpha, beta, gamma).df_dx


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_input_gradient_is_within_rounding_of_float64(device, dtype, layout):
    x, params = sample(dtype, layout, device), channel_parameters(device)
    grad_output = torch.ones_like(x)  # exact in every dtype: grad_x is ∂f/∂x itself
    x64, params64 = x.double(), [p.double() for p in params]
    want = input_gradient(x64, *params64)
    got = torch.ops.sqish.sqish_backward(grad_output, x, *params, False)[0]
    error = (got.double() - want).abs()
    bound = tolerance(dtype, want, sensitivity(input_gradient, x64, params64))
    assert (error <= bound).all(), (error / bound).max()
