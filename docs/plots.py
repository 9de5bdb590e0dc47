"""Draw the figures of docs/ into docs/img/: python docs/plots.py

Sqish is computed here in float64 from its closed forms (docs/math.md) as
sqish_ext.reference writes them in torch ops, not with the compiled kernels.
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from sqish_ext.reference import sqish_partials, sqish_reference  # noqa: E402

IMG = Path(__file__).parent / "img"
X = torch.linspace(-5, 5, 2001, dtype=torch.float64)


def sqish(x, alpha, beta, gamma):
    """f(x) and ∂f/∂x in float64 from the package's torch-ops reference."""
    return sqish_reference(x, alpha, beta, gamma), sqish_partials(x, alpha, beta, gamma).df_dx


def with_derivative(fn, x):
    x = x.clone().requires_grad_()
    y = fn(x)
    (dy,) = torch.autograd.grad(y.sum(), x)
    return y.detach(), dy


REFERENCES = {"ReLU": F.relu, "SiLU (Swish)": F.silu, "GELU": F.gelu, "Mish": F.mish}


def draw_pair(axes, curves, derivative_ylim=(-0.3, 1.3)):
    """curves: (label, f, df, style) drawn as f on axes[0] and ∂f/∂x on axes[1]."""
    for label, f, df, style in curves:
        axes[0].plot(X, f, label=label, **style)
        axes[1].plot(X, df, label=label, **style)
    for ax, title in zip(axes, ("f(x)", "∂f/∂x")):
        ax.set_title(title)
        ax.axhline(0, color="black", linewidth=0.5)
        ax.axvline(0, color="black", linewidth=0.5)
        ax.set_xlabel("x")
        ax.grid(alpha=0.3)
    axes[0].set_ylim(-1, 5)
    axes[1].set_ylim(*derivative_ylim)
    axes[0].legend(fontsize="small")


def figure_against_others():
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    curves = [(name, *with_derivative(fn, X), {"linestyle": "--"}) for name, fn in REFERENCES.items()]
    curves.append(("Sqish α=0.01, β=1, γ=1", *sqish(X, 0.01, 1.0, 1.0), {"color": "black", "linewidth": 2}))
    draw_pair(axes, curves)
    fig.suptitle("Sqish with its default parameters beside common activations")
    fig.savefig(IMG / "sqish_vs_activations.png", dpi=110)


def figure_parameters():
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    settings = [(0.01, 1.0, 1.0), (0.0, 1.0, 0.5), (0.25, 1.0, 1.0), (0.01, 0.1, 1.0), (0.01, 10.0, 1.0), (0.01, 1.0, 4.0)]
    curves = [(f"α={a:g}, β={b:g}, γ={g:g}", *sqish(X, a, b, g), {}) for a, b, g in settings]
    draw_pair(axes, curves, derivative_ylim=(-0.8, 1.6))
    axes[0].annotate("α=0, β=1, γ=½ is SiLU", xy=(-1.28, -0.28), xytext=(-4.8, 1.5), fontsize="small",
                     arrowprops={"arrowstyle": "->", "linewidth": 0.7})
    fig.suptitle("Sqish for several (α, β, γ): α sets the left slope, β shifts the gate, γ sharpens it")
    fig.savefig(IMG / "sqish_parameters.png", dpi=110)


def figure_gamma_sweep():
    alpha = 0.1  # larger than the default 0.01 so that the leaky slope is visible
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    x = X[(X >= -3) & (X <= 3)]
    for gamma in (0.25, 0.5, 1, 2, 4, 16):
        axes[0].plot(x, sqish(x, alpha, 1.0, gamma)[0], label=f"γ={gamma:g}")
    axes[0].plot(x, torch.maximum(alpha * x, x), color="black", linestyle="--", label="max(αx, x)")
    axes[0].set_title(f"Sqish, α={alpha:g}, β=1, as γ grows")
    axes[0].set_xlabel("x")
    axes[0].legend(fontsize="small")
    axes[0].grid(alpha=0.3)

    gammas = torch.logspace(-1, 2, 31, dtype=torch.float64)
    grid = torch.linspace(-50, 50, 200001, dtype=torch.float64)
    gaps = [(sqish(grid, alpha, 1.0, g.item())[0] - torch.maximum(alpha * grid, grid)).abs().max() for g in gammas]
    axes[1].loglog(gammas, gaps, marker="o", label="max over x of |f(x) − max(αx, x)|")
    omega = 0.2784645427610738  # W(1/e), the largest value of u·σ(−u)
    axes[1].loglog(gammas, omega / (2 * gammas), color="black", linestyle="--", label="W(1/e) / (2γ) ≈ 0.139 / γ")
    axes[1].set_title("largest gap to max(αx, x) (β = 1; the same for every α < 1)")
    axes[1].set_xlabel("γ")
    axes[1].legend(fontsize="small")
    axes[1].grid(alpha=0.3, which="both")
    fig.savefig(IMG / "gamma_sweep.png", dpi=110)


if __name__ == "__main__":
    IMG.mkdir(exist_ok=True)
    figure_against_others()
    figure_parameters()
    figure_gamma_sweep()
