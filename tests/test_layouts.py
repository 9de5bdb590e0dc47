"""Strided, sliced, transposed and channels_last inputs; empty and 0-dim tensors."""
import pytest
import torch

import sqish_ext
from conftest import oracle

PARAMS = (0.05, 0.8, 1.3)


def per_channel_params(channels, device):
    return [torch.linspace(v, 1.5 * v, channels, dtype=torch.float64, device=device) for v in PARAMS]


def layouts(device):
    base = torch.randn(4, 6, 5, 7, dtype=torch.float64, device=device) * 3
    return {
        "contiguous": base,
        "channels_last": base.to(memory_format=torch.channels_last),
        "transposed": base.transpose(2, 3),
        "sliced": base[:, :, ::2, 1:],
        "channel_slice": base[:, 1:5],
        "permuted_dense": base.permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2),
        "expanded": base[:, :, :1].expand(4, 6, 5, 7),
    }


@pytest.mark.parametrize("per_channel", [False, True], ids=["scalar", "per_channel"])
@pytest.mark.parametrize("layout", list(layouts("cpu")))
def test_forward_is_correct_for_every_layout(device, layout, per_channel):
    x = layouts(device)[layout]
    params = per_channel_params(x.size(1), device) if per_channel else PARAMS
    torch.testing.assert_close(sqish_ext.sqish(x, *params), oracle(x, *params)["f"], rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("per_channel", [False, True], ids=["scalar", "per_channel"])
@pytest.mark.parametrize("layout", list(layouts("cpu")))
def test_backward_is_correct_for_every_layout(device, layout, per_channel):
    x = layouts(device)[layout]
    params = per_channel_params(x.size(1), device) if per_channel else [torch.tensor(v, dtype=torch.float64) for v in PARAMS]
    grad = torch.randn(x.shape, dtype=torch.float64, device=device).transpose(0, 1).contiguous().transpose(0, 1)
    gx, ga, gb, gg = torch.ops.sqish.sqish_backward(grad, x, *params, True)
    want = oracle(x, *params)
    # ∂f/∂x crosses zero near the dip, so the float64 check is absolute there.
    torch.testing.assert_close(gx, grad * want["df_dx"], rtol=1e-12, atol=1e-14)
    dims = [0, 2, 3] if per_channel else [0, 1, 2, 3]
    for got, name in ((ga, "df_dalpha"), (gb, "df_dbeta"), (gg, "df_dgamma")):
        torch.testing.assert_close(got, (grad * want[name]).sum(dims), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "transposed", "permuted_dense"])
def test_output_keeps_the_memory_layout_of_a_dense_input(device, layout):
    x = layouts(device)[layout]
    assert sqish_ext.sqish(x).stride() == x.stride()


def test_channels_last_output_is_channels_last_like_torch_pointwise_ops(device):
    x = layouts(device)["channels_last"][:, :, ::2]
    y = sqish_ext.sqish(x)
    assert y.is_contiguous(memory_format=torch.channels_last) == torch.sigmoid(x).is_contiguous(
        memory_format=torch.channels_last
    )


@pytest.mark.parametrize("shape", [(0,), (3, 0, 2), (0, 4)])
def test_empty_tensors_work_forward_and_backward(device, shape):
    x = torch.randn(shape, device=device, requires_grad=True)
    params = [torch.tensor(v, device=device, requires_grad=True) for v in PARAMS]
    y = torch.ops.sqish.sqish(x, *params)
    y.sum().backward()
    assert y.shape == x.shape and x.grad.shape == x.shape
    assert all(p.grad.item() == 0 for p in params)


def test_zero_dim_tensor_works(device):
    x = torch.tensor(1.5, dtype=torch.float64, device=device)
    torch.testing.assert_close(sqish_ext.sqish(x, *PARAMS), oracle(x, *PARAMS)["f"])


@pytest.mark.parametrize("channels", [1, 3, 8, 13, 33])
def test_channels_innermost_layout_with_many_sizes(device, channels):
    # (N, C) inputs put channels innermost; sizes straddle vector widths.
    x = torch.randn(37, channels, dtype=torch.float64, device=device)
    params = per_channel_params(channels, device)
    torch.testing.assert_close(sqish_ext.sqish(x, *params), oracle(x, *params)["f"], rtol=1e-12, atol=1e-300)
