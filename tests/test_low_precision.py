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
from conftest import rounding_bound
from sqish_ext.reference import sqish_partials, sqish_reference

CHANNELS = 37
LAYOUTS = {"NCHW": torch.contiguous_format, "channels_last": torch.channels_last}


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


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_forward_is_within_rounding_of_float64(device, dtype, layout):
    x, params = sample(dtype, layout, device), channel_parameters(device)
    x64, params64 = x.double(), [p.double() for p in params]
    want = sqish_reference(x64, *params64)
    error = (sqish_ext.sqish(x, *params).double() - want).abs()
    bound = rounding_bound(dtype, sqish_reference, x64, params64)
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
    bound = rounding_bound(dtype, input_gradient, x64, params64)
    assert (error <= bound).all(), (error / bound).max()
