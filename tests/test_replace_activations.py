"""replace_activations: what it finds, what it puts there, and how it sizes per-channel modules."""
from functools import partial

import pytest
import torch
from torch import nn

from sqish_ext import Sqish, replace_activations


class Block(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(self.conv(x))


class Net(nn.Module):
    """ReLUs directly, inside a Sequential, inside a submodule inside a Sequential: 4 channels, then 8."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU())
        self.body = nn.Sequential(Block(4), nn.Conv2d(4, 8, 1))
        self.act = nn.ReLU()
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        x = self.act(self.body(self.stem(x)))
        return self.head(x.mean((2, 3)))


def relus(model):
    return [m for m in model.modules() if isinstance(m, nn.ReLU)]


def sqishes(model):
    return [m for m in model.modules() if isinstance(m, Sqish)]


def test_replaces_activations_at_every_depth_and_counts_them():
    model = Net()
    assert replace_activations(model) == 3
    assert relus(model) == []
    assert len(sqishes(model)) == 3


def test_default_replacement_is_a_fixed_sqish_with_default_parameters():
    model = Net()
    replace_activations(model)
    x = torch.randn(5)
    assert all(not m.learnable for m in sqishes(model))
    torch.testing.assert_close(model.act(x), Sqish()(x))


def test_model_without_matches_is_left_unchanged():
    model = nn.Sequential(nn.Linear(2, 2), nn.Tanh())
    assert replace_activations(model) == 0
    assert isinstance(model[1], nn.Tanh)


def test_replaces_inside_module_list_and_module_dict():
    model = nn.ModuleDict({"first-branch": nn.ReLU(), "list": nn.ModuleList([nn.Linear(2, 2), nn.ReLU()])})
    assert replace_activations(model, new=nn.SiLU) == 2
    assert isinstance(model["first-branch"], nn.SiLU)
    assert isinstance(model["list"][1], nn.SiLU)


def test_replaces_inplace_relu_and_the_model_stops_overwriting_its_input():
    model = nn.Sequential(nn.ReLU(inplace=True))
    replace_activations(model, new=Sqish())
    x = torch.randn(4, 3)
    before = x.clone()
    torch.testing.assert_close(model(x), Sqish()(before))
    torch.testing.assert_close(x, before)


def test_old_selects_which_types_are_replaced():
    model = nn.Sequential(nn.ReLU(), nn.ReLU6(), nn.GELU())
    assert replace_activations(model, old=(nn.ReLU6, nn.GELU), new=nn.SiLU) == 2
    assert [type(m) for m in model] == [nn.ReLU, nn.SiLU, nn.SiLU]


def test_old_may_be_a_single_type():
    model = nn.Sequential(nn.ReLU6())
    assert replace_activations(model, old=nn.ReLU6, new=nn.SiLU) == 1


def test_module_new_is_copied_so_sites_do_not_share_parameters():
    model = Net()
    replace_activations(model, new=Sqish(learnable=True))
    alphas = [m.alpha for m in sqishes(model)]
    assert len({id(a) for a in alphas}) == 3


def test_factory_new_is_called_once_per_site():
    calls = []

    def factory():
        calls.append(1)
        return nn.SiLU()

    replace_activations(Net(), new=factory)
    assert len(calls) == 3


def test_module_registered_twice_becomes_one_module_in_both_places():
    shared = nn.ReLU()
    model = nn.Sequential(nn.Linear(2, 2), shared, nn.Linear(2, 2), shared)
    assert replace_activations(model, new=Sqish(learnable=True)) == 1
    assert isinstance(model[1], Sqish)
    assert model[1] is model[3]


def test_model_that_is_itself_an_old_module_is_an_error():
    with pytest.raises(ValueError, match="the model itself is a ReLU"):
        replace_activations(nn.ReLU())


def test_per_channel_factory_gets_each_sites_channel_count():
    model = Net()
    replace_activations(model, new=partial(Sqish, learnable=True), example_input=torch.randn(2, 3, 5, 5))
    assert model.stem[1].alpha.shape == (4,)
    assert model.body[0].act.alpha.shape == (4,)
    assert model.act.alpha.shape == (8,)
    model(torch.randn(2, 3, 5, 5)).sum().backward()
    assert model.act.alpha.grad.shape == (8,)


def test_channel_counting_pass_leaves_batch_norm_statistics_and_modes_alone():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout())
    model.train()
    model[3].eval()
    replace_activations(model, new=partial(Sqish, learnable=True), example_input=torch.randn(2, 3, 4, 4) + 5)
    torch.testing.assert_close(model[1].running_mean, torch.zeros(4))
    assert [m.training for m in model] == [True, True, True, False]


def test_example_input_may_be_a_tuple_of_arguments():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.act = nn.ReLU()

        def forward(self, a, b):
            return self.act(torch.cat([a, b], 1))

    model = TwoInputs()
    replace_activations(model, new=partial(Sqish, learnable=True), example_input=(torch.randn(1, 2), torch.randn(1, 3)))
    assert model.act.alpha.shape == (5,)


def test_site_that_does_not_run_on_the_example_is_named_in_the_error():
    model = Net()
    model.unused = nn.ReLU()
    with pytest.raises(ValueError, match=r"'unused' \(ReLU\).*did not run on example_input"):
        replace_activations(model, new=partial(Sqish, learnable=True), example_input=torch.randn(1, 3, 4, 4))


def test_site_with_a_one_dimensional_input_is_named_in_the_error():
    model = nn.Sequential(nn.Flatten(0), nn.ReLU())
    with pytest.raises(ValueError, match=r"'1' \(ReLU\).*2 or more dims"):
        replace_activations(model, new=partial(Sqish, learnable=True), example_input=torch.randn(2, 3))


@pytest.fixture
def torchvision():
    """torchvision's models, where torchvision is installed (the experiment's extra)."""
    return pytest.importorskip("torchvision", reason="needs torchvision (pip install 'sqish-ext[experiment]')")


def test_site_called_with_different_channel_counts_is_named_in_the_error(torchvision):
    # torchvision's Bottleneck calls its one ReLU after 64-, 64- and 256-channel layers.
    model = torchvision.models.resnet50(num_classes=10)
    with pytest.raises(ValueError, match=r"'layer1.0.relu' \(ReLU\) is called with \[64, 256\] channels"):
        replace_activations(model, new=partial(Sqish, learnable=True), example_input=torch.randn(1, 3, 32, 32))


def test_module_new_with_example_input_is_an_error():
    with pytest.raises(ValueError, match="example_input only serves a factory"):
        replace_activations(Net(), new=Sqish(), example_input=torch.randn(1, 3, 4, 4))


def test_replacing_relu_by_relu_keeps_the_model_function(torchvision):
    torch.manual_seed(0)
    model = torchvision.models.shufflenet_v2_x0_5(num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    expected = model(x)
    replace_activations(model, new=nn.ReLU)
    torch.testing.assert_close(model(x), expected)


def test_torchvision_shufflenet_v2_gets_per_channel_sqish_in_every_inplace_relu_site(torchvision):
    model = torchvision.models.shufflenet_v2_x0_5(num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    assert replace_activations(model, new=partial(Sqish, learnable=True), example_input=x) == 37
    assert relus(model) == []
    assert model.conv5[2].alpha.shape == (1024,)
    model(x).sum().backward()
    assert all(m.gamma.grad is not None for m in sqishes(model))


def test_torchvision_resnet18_gets_per_channel_sqish_shared_by_each_blocks_two_calls(torchvision):
    model = torchvision.models.resnet18(num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    assert replace_activations(model, new=partial(Sqish, learnable=True), example_input=x) == 9
    assert model.layer4[1].relu.alpha.shape == (512,)
    assert model(x).shape == (2, 10)


def test_torchvision_mobilenet_v2_relu6_is_replaced_when_asked_for(torchvision):
    model = torchvision.models.mobilenet_v2(num_classes=10)
    assert replace_activations(model) == 0  # MobileNetV2 has no nn.ReLU, only nn.ReLU6
    assert replace_activations(model, old=nn.ReLU6, new=Sqish()) == 35
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
