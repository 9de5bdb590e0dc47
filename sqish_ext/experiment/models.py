"""The network (a CIFAR-style ShuffleNet V2 behind a fixed input layer) and the activations it is trained with."""

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torchvision
from torch import nn

from sqish_ext import Sqish, replace_activations
from sqish_ext.ops import DEFAULT_ALPHA

WIDTHS = ("0.5", "1.0", "1.5", "2.0")


@dataclass(frozen=True)
class Variant:
    """How a model differs from torchvision's ShuffleNet V2, whose activations are nn.ReLU(inplace=True)."""

    new: Callable[..., nn.Module] | None = None  # factory handed to replace_activations; None keeps the ReLUs
    per_channel: bool = False  # one parameter per channel at each site, sized from an example batch


# Sqish with the package's defaults; leaky ReLU gets Sqish's α as its slope, being Sqish's γ → ∞ limit.
ACTIVATIONS = {
    "relu": Variant(),
    "leaky_relu": Variant(partial(nn.LeakyReLU, DEFAULT_ALPHA)),
    "silu": Variant(nn.SiLU),
    "gelu": Variant(nn.GELU),
    "mish": Variant(nn.Mish),
    "sqish": Variant(Sqish),
    "sqish_learnable": Variant(partial(Sqish, learnable=True), per_channel=True),
}
BASELINE = "relu"
# One function built two ways: SiLU is Sqish(α=0, β=1, γ=½) (equal to 2e-7), so any difference between
# the pair is training noise, the floor under every other difference.
NULL_CONTROL = ("silu", "sqish_silu")
NULL_TWIN = {"sqish_silu": Variant(partial(Sqish, 0.0, 1.0, 0.5))}
# Modules whose time counts as activation time in the hook measurement.
ACTIVATION_MODULES = (nn.ReLU, nn.LeakyReLU, nn.SiLU, nn.GELU, nn.Mish, Sqish)


class FixedInput(nn.Module):
    """The first layer, without parameters: repeats a grey image's channel to the three the network takes.

    Being part of the model, it is differentiated through, so attacks perturb the native pixels
    (a digit's 64 grey values, not the 3,072 values of an RGB copy). It leaves RGB images as they are.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, 3, -1, -1)


def cifar_shufflenet_v2(width: str, num_classes: int) -> nn.Module:
    """torchvision's ShuffleNet V2 with the stem CIFAR papers use: a stride-1 first convolution and no max-pool.

    The ImageNet stem divides the resolution by 4 before the first stage, which leaves a 32×32 image
    1×1 in the last; here a 32×32 image reaches the last stage at 4×4, and an 8×8 digit needs no
    upscaling (it reaches the first stage at 8×8, as it did upscaled to 32×32 through the ImageNet stem).
    """
    build = getattr(torchvision.models, f"shufflenet_v2_x{width.replace('.', '_')}")
    model = build(weights=None, num_classes=num_classes)
    model.conv1[0].stride = (1, 1)
    model.maxpool = nn.Identity()
    return model


def build_model(variant: Variant, width: str, num_classes: int, example: torch.Tensor, seed: int) -> nn.Module:
    """FixedInput, then the network with the variant's activations; the weights are drawn from seed.

    The activations are swapped after the weights are drawn, so the models of one seed have the
    same convolution weights and differ only in their activation.
    """
    torch.manual_seed(seed)
    model = nn.Sequential(FixedInput(), cifar_shufflenet_v2(width, num_classes))
    if variant.new is not None:
        replace_activations(model, new=variant.new, example_input=example if variant.per_channel else None)
    return model
