"""The Sqish module."""
import copy

import pytest
import torch

import sqish_ext


def test_learnable_module_owns_parameters_alpha_log_beta_gamma():
    m = sqish_ext.Sqish(learnable=True)
    assert [n for n, _ in m.named_parameters()] == ["alpha", "log_beta", "gamma"]
    assert all(p.shape == () for p in m.parameters())


def test_learnable_beta_reads_as_exp_of_log_beta():
    m = sqish_ext.Sqish(beta=2.5, learnable=True, num_parameters=3)
    torch.testing.assert_close(m.log_beta.detach(), torch.full((3,), 2.5).log())
    torch.testing.assert_close(m.beta.detach(), torch.full((3,), 2.5))


def test_learnable_beta_must_start_positive():
    with pytest.raises(ValueError, match="learnable beta must be > 0"):
        sqish_ext.Sqish(beta=0.0, learnable=True)


def test_learnable_beta_stays_positive_at_a_learning_rate_that_drives_a_raw_beta_negative():
    # Fitting f(x) = x pulls β towards 0 (Sqish tends to the identity as β → 0). The
    # same steps on β as a plain parameter take it below 0 and the loss to NaN (so
    # the rate is large enough); trained as ln β, it stays positive and finite.
    def train(raw_beta=None):
        act = sqish_ext.Sqish(0.1, 0.5, 1.0, learnable=True, num_parameters=4)
        beta = act.log_beta if raw_beta is None else raw_beta
        if raw_beta is not None:
            act.forward = lambda x: sqish_ext.sqish(x, act.alpha, raw_beta, act.gamma)
        optimizer = torch.optim.SGD([{"params": [act.alpha, act.gamma], "lr": 0.1}, {"params": [beta], "lr": 1.0}])
        x = torch.randn(8, 4, 6, 6, generator=torch.Generator().manual_seed(0)) * 2
        betas, losses = [], []
        for _ in range(20):
            optimizer.zero_grad()
            loss = (act(x) - x).square().mean()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            betas.append((act.beta if raw_beta is None else raw_beta).detach().clone())
        return torch.stack(betas), torch.tensor(losses)

    raw_betas, raw_losses = train(torch.nn.Parameter(torch.full((4,), 0.5)))
    assert (raw_betas <= 0).any() and not raw_losses.isfinite().all()
    betas, losses = train()
    assert (betas > 0).all() and losses.isfinite().all()
    assert losses[-1] < losses[0]


def test_learnable_module_loads_a_state_dict_that_trained_beta_itself():
    # The form learnable beta was saved in before it was trained as ln beta.
    m = sqish_ext.Sqish(learnable=True, num_parameters=2)
    state = {"alpha": torch.tensor([0.1, 0.2]), "beta": torch.tensor([0.5, 4.0]), "gamma": torch.tensor([1.0, 2.0])}
    m.load_state_dict(state)
    torch.testing.assert_close(m.beta.detach(), torch.tensor([0.5, 4.0]))
    assert list(m.state_dict()) == ["alpha", "log_beta", "gamma"]


def test_a_saved_learnable_beta_at_or_below_zero_is_a_load_error():
    m = sqish_ext.Sqish(learnable=True)
    state = {"alpha": torch.tensor(0.1), "beta": torch.tensor(-0.5), "gamma": torch.tensor(1.0)}
    with pytest.raises(RuntimeError, match="beta has values <= 0"):
        m.load_state_dict(state)


def test_per_channel_learnable_parameters_have_one_value_per_channel():
    m = sqish_ext.Sqish(alpha=0.2, learnable=True, num_parameters=5)
    assert all(p.shape == (5,) for p in m.parameters())
    assert torch.equal(m.alpha.detach(), torch.full((5,), 0.2))


def test_fixed_module_has_no_parameters():
    assert list(sqish_ext.Sqish().parameters()) == []


def test_defaults_are_alpha_001_beta_1_gamma_1():
    m = sqish_ext.Sqish()
    assert (m.alpha, m.beta, m.gamma) == (0.01, 1.0, 1.0)


def test_fixed_single_values_are_floats_that_dtype_and_device_moves_keep():
    m = sqish_ext.Sqish(0.1, 2.0, 0.5)
    for convert in (torch.nn.Module.half, torch.nn.Module.bfloat16, torch.nn.Module.double):
        convert(m)
        assert (m.alpha, m.beta, m.gamma) == (0.1, 2.0, 0.5)
    assert list(m.state_dict()) == []


def test_fixed_module_loads_a_state_dict_that_holds_its_values_as_buffers():
    # The form fixed single values were saved in before they were floats.
    m = sqish_ext.Sqish()
    state = {"alpha": torch.tensor(0.25), "beta": torch.tensor(2.0), "gamma": torch.tensor(0.5)}
    m.load_state_dict(state)
    assert (m.alpha, m.beta, m.gamma) == (0.25, 2.0, 0.5)


def test_module_matches_the_functional_form(device):
    m = sqish_ext.Sqish(0.1, 2.0, 0.5, learnable=True, num_parameters=3).to(device)
    x = torch.randn(2, 3, 4, device=device)
    torch.testing.assert_close(m(x), sqish_ext.sqish(x, m.alpha, m.beta, m.gamma))


def test_learnable_parameters_receive_gradients(device):
    m = sqish_ext.Sqish(learnable=True, num_parameters=3).to(device)
    m(torch.randn(2, 3, 4, device=device)).sum().backward()
    assert all(p.grad is not None and p.grad.shape == (3,) for p in m.parameters())


def test_extra_repr_shows_the_configuration():
    text = repr(sqish_ext.Sqish(0.1, 2.0, 0.5, learnable=True, num_parameters=4))
    assert "alpha=0.1" in text and "beta=2" in text and "gamma=0.5" in text
    assert "learnable=True" in text and "num_parameters=4" in text


def test_state_dict_round_trips():
    for learnable in (False, True):
        src = sqish_ext.Sqish(0.3, 0.7, 2.0, learnable=learnable, num_parameters=3)
        dst = sqish_ext.Sqish(learnable=learnable, num_parameters=3)
        dst.load_state_dict(src.state_dict())
        x = torch.randn(2, 3, 5)
        assert torch.equal(dst(x), src(x))


def test_bfloat16_input_with_float32_parameters_gives_float32_parameter_gradients():
    m = sqish_ext.Sqish(learnable=True, num_parameters=4)
    x = torch.randn(3, 4).bfloat16().requires_grad_()
    y = m(x)
    y.float().sum().backward()
    assert y.dtype == torch.bfloat16
    assert all(p.grad.dtype == torch.float32 for p in m.parameters())


AUTOCAST = [("cpu", torch.bfloat16), ("cuda", torch.float16), ("cuda", torch.bfloat16)]


@pytest.mark.parametrize("device,dtype", [
    pytest.param(d, t, marks=pytest.mark.skipif(d == "cuda" and not torch.cuda.is_available(), reason="no CUDA device"))
    for d, t in AUTOCAST], ids=[f"{d}-{str(t)[6:]}" for d, t in AUTOCAST])
def test_learnable_sqish_trains_under_autocast(device, dtype):
    torch.manual_seed(0)
    act = sqish_ext.Sqish(learnable=True, num_parameters=4)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), act, torch.nn.Conv2d(4, 2, 1)).to(device)
    seen = []
    act.register_forward_hook(lambda module, args, out: seen.append((args[0].dtype, out.dtype)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x, target = torch.randn(4, 3, 6, 6, device=device), torch.randn(4, 2, 6, 6, device=device)
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        with torch.autocast(device, dtype=dtype):
            loss = (model(x).float() - target).square().mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert seen[0] == (dtype, dtype)  # x stays in the autocast dtype
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in act.parameters())
    assert all(p.grad.isfinite().all() for p in act.parameters())
    assert losses[-1] < losses[0]


HALF_TOLERANCE = {torch.float16: dict(rtol=2e-3, atol=1e-3), torch.bfloat16: dict(rtol=1.6e-2, atol=1e-2)}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("learnable", [False, True], ids=["fixed", "learnable"])
def test_module_converted_to_half_precision_matches_float32(device, dtype, learnable):
    # model.half() / .bfloat16() rounds the parameters to dtype, and x is in dtype:
    # the result is the float32 module's at the rounded values, to one rounding of dtype.
    reference = sqish_ext.Sqish(0.1, 1.5, 0.7, learnable=learnable, num_parameters=4).to(device)
    converted = copy.deepcopy(reference).to(dtype)
    with torch.no_grad():
        for p in reference.buffers() if not learnable else reference.parameters():
            p.copy_(p.to(dtype))
    x = torch.randn(3, 4, 5, device=device).to(dtype)
    torch.testing.assert_close(converted(x), reference(x.float()).to(dtype), **HALF_TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_parameter_gradients_come_back_in_the_converted_dtype(device, dtype):
    module = sqish_ext.Sqish(learnable=True, num_parameters=4).to(device, dtype)
    module(torch.randn(3, 4, 5, device=device, dtype=dtype)).float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == dtype for p in module.parameters())
