"""Sqish and its four partial derivatives written with differentiable torch ops:
the package's one reference of the formula (docs/math.md's closed forms).

The compiled kernels are what models run. This module serves where they cannot:
differentiating the fused backward (the double backward in ops.py), checking the
kernels in the tests and benchmarks, and drawing the docs' figures. It is checked
itself against tests/data/sqish_reference.csv (mpmath at 80 digits).

Everything is evaluated in the dtype the arguments promote to; callers choose it
(float64 for checks, float32 or wider for the double backward). Parameters are
numbers or tensors, 0-dim or one per channel: a 1-dim parameter runs along dim 1
of x, as in the ops.
"""
from typing import NamedTuple, Union

import torch

Parameter = Union[float, torch.Tensor]


class Partials(NamedTuple):
    df_dx: torch.Tensor
    df_dalpha: torch.Tensor
    df_dbeta: torch.Tensor
    df_dgamma: torch.Tensor


def along_channels(parameter: Parameter, x: torch.Tensor) -> torch.Tensor:
    """The parameter as a tensor that broadcasts against x the way the ops do."""
    p = parameter if isinstance(parameter, torch.Tensor) else torch.tensor(parameter, dtype=x.dtype, device=x.device)
    if p.dim() == 1 and x.dim() >= 2:
        return p.reshape([1, -1] + [1] * (x.dim() - 2))
    return p


def _gate(x, alpha, beta, gamma):
    """(α, k, s, 1 − s) broadcast against x, with s = σ(k·x − ln β), k = 2γ(1 − α).
    1 − s is σ(−w), never a subtraction, so it keeps its precision where s → 1."""
    a, b, g = (along_channels(p, x) for p in (alpha, beta, gamma))
    k = 2 * g * (1 - a)
    w = k * x - torch.log(b)
    return a, b, k, torch.sigmoid(w), torch.sigmoid(-w)


def sqish_reference(x: torch.Tensor, alpha: Parameter, beta: Parameter, gamma: Parameter) -> torch.Tensor:
    """f(x) = α·x + (1 − α)·x·σ(k·x − ln β)."""
    a, _, _, s, _ = _gate(x, alpha, beta, gamma)
    return a * x + (1 - a) * x * s


def sqish_partials(x: torch.Tensor, alpha: Parameter, beta: Parameter, gamma: Parameter) -> Partials:
    """∂f/∂x, ∂f/∂α, ∂f/∂β, ∂f/∂γ per element (not reduced over x)."""
    a, b, k, s, sc = _gate(x, alpha, beta, gamma)
    q = s * sc
    return Partials(
        df_dx=a + (1 - a) * (s + k * x * q),
        df_dalpha=x * sc - k * x * x * q,
        # −(1−α)·x·s·(1−s)/β, with (1−s)/β = 1/(β + e^(kx)): the same for β > 0, and
        # at β = 0 its limit −(1−α)·x·e^(−kx) instead of 0/0.
        df_dbeta=-(1 - a) * x * s / (b + torch.exp(k * x)),
        df_dgamma=2 * (1 - a) ** 2 * x * x * q,
    )
