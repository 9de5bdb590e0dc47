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


# ---- inplace=True: "may overwrite the input", as torch's activations mean it -------------


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode], ids=["no_grad", "inference_mode"])
def test_inplace_module_overwrites_its_input_when_nothing_is_recorded(device, context):
    x = torch.randn(4, 3, 5, device=device)
    expected = sqish_ext.Sqish(0.1, 1.5, 0.7)(x)
    with context():
        x_in = x.clone()
        y = sqish_ext.Sqish(0.1, 1.5, 0.7, inplace=True)(x_in)
    assert y.data_ptr() == x_in.data_ptr()
    assert torch.equal(y, expected)


@pytest.mark.parametrize("learnable", [False, True], ids=["fixed", "learnable"])
def test_inplace_module_under_autograd_keeps_its_input_and_its_gradients(device, learnable):
    torch.manual_seed(0)
    reference = sqish_ext.Sqish(0.1, 1.5, 0.7, learnable=learnable, num_parameters=3).to(device)
    inplace = sqish_ext.Sqish(0.1, 1.5, 0.7, learnable=learnable, num_parameters=3, inplace=True).to(device)
    base = torch.randn(4, 3, 5, device=device, requires_grad=True)
    grads = []
    for module in (reference, inplace):
        x = base * 2  # a non-leaf, as an activation's input is
        module(x).square().sum().backward()
        assert torch.equal(x, base * 2)
        grads.append([base.grad.clone(), *(p.grad for p in module.parameters())])
        base.grad = None
    for got, want in zip(grads[1], grads[0]):
        assert torch.equal(got, want)


def test_inplace_functional_form_follows_the_same_rule(device):
    x = torch.randn(6, device=device)
    with torch.no_grad():
        assert sqish_ext.sqish(x, inplace=True) is x
    leaf = torch.randn(6, device=device, requires_grad=True)
    assert sqish_ext.sqish(leaf, inplace=True) is not leaf


def test_inplace_module_shows_it_in_its_repr_and_scripts():
    module = sqish_ext.Sqish(inplace=True)
    assert "inplace=True" in repr(module)
    scripted = torch.jit.script(module)
    x = torch.randn(5)
    with torch.no_grad():
        expected = sqish_ext.Sqish()(x)
        assert torch.equal(scripted(x.clone()), expected)
