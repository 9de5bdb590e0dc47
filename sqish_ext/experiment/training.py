"""Training recipes and the training loop."""

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm


@dataclass(frozen=True)
class Recipe:
    epochs: int
    batch_size: int
    optimizer: str  # "adamw" or "sgd" (Nesterov momentum 0.9)
    lr: float  # peak of the one-cycle schedule
    weight_decay: float
    augment: bool  # random crops of the image padded by 4 pixels, half of them mirrored


RECIPES = {
    "digits": Recipe(epochs=6, batch_size=128, optimizer="adamw", lr=0.02, weight_decay=5e-4, augment=False),
    # The training of CIFAR papers: SGD with Nesterov momentum, weight decay 5·10⁻⁴, crops and flips.
    "cifar": Recipe(epochs=100, batch_size=128, optimizer="sgd", lr=0.1, weight_decay=5e-4, augment=True),
}


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    # Weight decay on conv and linear weights only: decaying batch-norm scales, biases or the
    # activation's α, β, γ would pull them towards 0 for no benefit (β → 0 turns Sqish into identity).
    params = list(model.parameters())
    groups = [
        {"params": [p for p in params if p.dim() > 1], "weight_decay": recipe.weight_decay},
        {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0},
    ]
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=recipe.lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=recipe.lr)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    optimizer.step()


def crop_and_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image cropped at a random offset from its 4-pixel zero padding, and mirrored with probability ½."""
    n, channels, height, width = x.shape
    padded = F.pad(x, (4, 4, 4, 4))
    top, left = (torch.randint(0, 9, (n, 1), generator=generator) for _ in range(2))
    rows, cols = top + torch.arange(height), left + torch.arange(width)
    mirrored = torch.rand(n, 1, generator=generator) < 0.5
    cols = torch.where(mirrored, cols.flip(1), cols)  # a mirror image reads its columns backwards
    image, channel = torch.arange(n)[:, None, None, None], torch.arange(channels)[None, :, None, None]
    index = [t.to(x.device) for t in (image, channel, rows[:, None, :, None], cols[:, None, None, :])]
    return padded[tuple(index)]


def clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: Recipe, seed: int, desc: str | None) -> float:
    """Train in place with a one-cycle schedule; return the wall time of the training loop.

    seed fixes the batch order and the augmentation; desc labels a progress bar over the epochs, or
    None for none (worker processes, whose bars would overwrite each other's).
    """
    model.train()
    optimizer = make_optimizer(model, recipe)
    steps_per_epoch = -(-len(y) // recipe.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, recipe.lr, total_steps=recipe.epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(seed)
    start = clock(x.device)
    for _ in tqdm(range(recipe.epochs), desc=desc, unit="epoch", leave=False, disable=None if desc else True):
        for idx in torch.randperm(len(y), generator=generator).split(recipe.batch_size):
            idx = idx.to(x.device)
            xb = crop_and_flip(x[idx], generator) if recipe.augment else x[idx]
            train_step(model, optimizer, xb, y[idx])
            schedule.step()
    return clock(x.device) - start
