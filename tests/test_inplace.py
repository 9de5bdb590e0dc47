"""The in-place op for inference."""
import pytest
import torch

import sqish_ext


def test_inplace_matches_out_of_place_and_returns_its_input(device):
    x = torch.randn(5, 7, device=device)
    want = sqish_ext.sqish(x, 0.1, 2.0, 0.5)
    y = sqish_ext.sqish_(x, 0.1, 2.0, 0.5)
    assert y is x
    assert torch.equal(x, want)


def test_inplace_on_a_strided_view_writes_through_to_the_base(device):
    base = torch.randn(6, 8, device=device)
    expected = base.clone()
    expected[:, ::2] = sqish_ext.sqish(expected[:, ::2])
    sqish_ext.sqish_(base[:, ::2])
    assert torch.equal(base, expected)


def test_inplace_refuses_an_input_that_requires_grad(device):
    x = torch.randn(4, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="sqish_: the in-place Sqish overwrites its input"):
        sqish_ext.sqish_(x.clone())


def test_inplace_refuses_learnable_parameters(device):
    alpha = torch.tensor(0.1, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"Use sqish \(out of place\) for training"):
        sqish_ext.sqish_(torch.randn(4, device=device), alpha=alpha)


def test_inplace_works_under_no_grad_and_inference_mode(device):
    x = torch.randn(4, device=device, requires_grad=True)
    with torch.no_grad():
        y = sqish_ext.sqish_(x.clone())
    with torch.inference_mode():
        z = sqish_ext.sqish_(x.detach().clone())
    torch.testing.assert_close(y, sqish_ext.sqish(x.detach()))
    torch.testing.assert_close(z, y)


def test_inplace_bumps_the_version_counter_so_autograd_detects_stale_saved_inputs(device):
    w = torch.tensor(2.0, device=device, requires_grad=True)
    x = torch.randn(4, device=device)
    y = (w * x).sum()  # saves x for w's gradient
    with torch.no_grad():
        sqish_ext.sqish_(x)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward()
