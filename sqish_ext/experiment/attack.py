"""White-box L∞ attacks on the model's input, the native image in [0, 1], and the accuracies under them."""

import torch
import torch.nn.functional as F
from torch import nn

PGD_STEPS = 10


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits at x and the gradient of the cross-entropy with respect to x."""
    x = x.detach().requires_grad_()
    logits = model(x)
    (grad,) = torch.autograd.grad(F.cross_entropy(logits, y), x)
    return logits.detach(), grad


def fgsm(x: torch.Tensor, grad: torch.Tensor, eps: float) -> torch.Tensor:
    """Goodfellow et al.'s one step: x + ε·sign(∇ₓ loss), clamped to the pixel range."""
    return (x + eps * grad.sign()).clamp_(0, 1)


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, generator: torch.Generator) -> torch.Tensor:
    """Madry et al.'s PGD: a uniform random start in the ε-ball, then PGD_STEPS signed steps of 2.5·ε/PGD_STEPS,
    each projected back onto the ball and the pixel range."""
    step = 2.5 * eps / PGD_STEPS
    start = (torch.rand(x.shape, generator=generator) * 2 - 1).to(x.device)
    adv = (x + eps * start).clamp_(0, 1)
    for _ in range(PGD_STEPS):
        _, grad = input_gradient(model, adv, y)
        adv = torch.minimum(torch.maximum(adv + step * grad.sign(), x - eps), x + eps).clamp_(0, 1)
    return adv


def metric_names(eps: list[float], pgd_eps: float) -> list[str]:
    return ["clean", *(f"fgsm_{e:g}" for e in eps), f"pgd{PGD_STEPS}_{pgd_eps:g}"]


def accuracies(model, x, y, eps: list[float], pgd_eps: float, seed: int, batch_size: int = 500) -> dict[str, float]:
    """Clean accuracy, FGSM accuracy at each ε and PGD accuracy at pgd_eps, model in eval mode.

    FGSM at every ε uses the one gradient at the clean image. PGD at an ε where FGSM is also run is
    the check for gradient masking: a stronger attack must not leave more images correct.
    """
    model.eval()
    names = metric_names(eps, pgd_eps)
    correct = dict.fromkeys(names, 0)
    generator = torch.Generator().manual_seed(seed)
    for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
        logits, grad = input_gradient(model, xb, yb)
        with torch.no_grad():
            predictions = [logits, *(model(fgsm(xb, grad, e)) for e in eps)]
        adv = pgd(model, xb, yb, pgd_eps, generator)
        with torch.no_grad():
            predictions.append(model(adv))
        for name, out in zip(names, predictions):
            correct[name] += (out.argmax(1) == yb).sum().item()
    return {name: count / len(y) for name, count in correct.items()}
