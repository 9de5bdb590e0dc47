"""Sqish in timm models, built the way timm users try an activation: act_layer=."""
import pytest
import torch

import sqish_ext


@pytest.fixture(scope="module")
def timm():
    return pytest.importorskip("timm", reason="needs timm (requirements.txt)")


# (name, extra create_model arguments): small inputs keep them fast.
MODELS = {
    "resnet18": {},
    "mobilenetv3_small_100": {},
    "efficientnet_b0": {},
    "convnext_atto": {},
    "vit_tiny_patch16_224": {"img_size": 32},
}


def build(timm, name, act_layer=sqish_ext.Sqish):
    torch.manual_seed(0)
    return timm.create_model(name, act_layer=act_layer, num_classes=10, pretrained=False, **MODELS[name])


def images():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", MODELS)
def test_timm_model_built_with_sqish_as_act_layer_trains(timm, name):
    # timm builds its activations as act_layer(inplace=True); training keeps the inputs.
    model = build(timm, name)
    assert any(isinstance(m, sqish_ext.Sqish) for m in model.modules())
    model(images()).square().sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and g.isfinite().all() for g in grads)


@pytest.mark.parametrize("name", MODELS)
def test_compiled_timm_model_with_sqish_matches_eager(timm, name):
    model = build(timm, name).eval()
    x = images()
    with torch.no_grad():
        expected = model(x)
        got = torch.compile(model)(x)
    # Inductor fuses and reorders the convolutions' and norms' float32 arithmetic.
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_replace_activations_swaps_timms_own_activation_classes(timm):
    model = build(timm, "efficientnet_b0", act_layer=timm.layers.activations.Swish)
    replaced = sqish_ext.replace_activations(model, old=(timm.layers.activations.Swish,))
    assert replaced > 0
    assert not any(isinstance(m, timm.layers.activations.Swish) for m in model.modules())
    assert model(images()).isfinite().all()
