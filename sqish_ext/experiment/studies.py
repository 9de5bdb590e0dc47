"""The two studies behind --studies: a γ sweep of fixed Sqish, and fixed against learnable parameters."""

from functools import partial

import torch
from torch import nn

from sqish_ext import Sqish, sqish
from sqish_ext.experiment.models import Variant
from sqish_ext.ops import DEFAULT_ALPHA, DEFAULT_BETA, DEFAULT_GAMMA

GAMMAS = (0.5, 1.0, 4.0)
# Fixed Sqish, one learnable (α, β, γ) per site, and one per channel at each site.
PARAMETER_STUDY = ("sqish", "sqish_learnable_scalar", "sqish_learnable")
_LEARNABLE_SCALAR = {"sqish_learnable_scalar": Variant(partial(Sqish, learnable=True))}


def gamma_variant(gamma: float) -> str:
    """The name of fixed Sqish at this γ; at the default γ it is the main comparison's `sqish`."""
    return "sqish" if gamma == DEFAULT_GAMMA else f"sqish_gamma={gamma:g}"


def variants(gammas: tuple[float, ...]) -> dict[str, Variant]:
    """The models the studies add to the main comparison's."""
    sweep = {gamma_variant(g): Variant(partial(Sqish, DEFAULT_ALPHA, DEFAULT_BETA, g)) for g in gammas}
    return {name: v for name, v in sweep.items() if name != "sqish"} | _LEARNABLE_SCALAR


def max_gap(gamma: float) -> float:
    """Largest |Sqish(x) − max(αx, x)| over x in [−20, 20], in float64, at the default α and β."""
    x = torch.linspace(-20, 20, 40001, dtype=torch.float64)
    return (sqish(x, DEFAULT_ALPHA, DEFAULT_BETA, gamma) - torch.maximum(DEFAULT_ALPHA * x, x)).abs().max().item()


def learned_parameters(model: nn.Module) -> dict[str, dict[str, float]]:
    """Mean, min and max of each learnable Sqish parameter over all sites and channels ({} if none)."""
    sites = [m for m in model.modules() if isinstance(m, Sqish) and isinstance(m.alpha, nn.Parameter)]
    if not sites:
        return {}
    stats = {}
    for name in ("alpha", "beta", "gamma"):
        values = torch.cat([getattr(m, name).detach().flatten().double().cpu() for m in sites])
        stats[name] = {"mean": values.mean().item(), "min": values.min().item(), "max": values.max().item()}
    return stats
