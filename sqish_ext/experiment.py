"""Train torchvision's ShuffleNet V2 x0.5 from scratch once per activation and compare them.

For every activation and seed: clean test accuracy, FGSM accuracy at a few ε, training time, and the
share of training time spent inside the activation modules. Two studies go with it: a γ sweep of
fixed Sqish (its largest distance from max(αx, x), and the accuracy it gives) and fixed against
learnable Sqish parameters. docs/experiments.md says how each number is measured.

    python -m sqish_ext.experiment              # digits, offline, a few minutes on two CPU cores
    python -m sqish_ext.experiment --quick      # smoke test
    python -m sqish_ext.experiment --dataset cifar10 --data-dir ~/data --download --device cuda --epochs 30
"""

import argparse
import copy
import csv
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from tqdm import tqdm

from sqish_ext import Sqish, sqish
from sqish_ext import replace_activations

# The package's default Sqish; LeakyReLU gets the same slope α, being the limit of Sqish as γ → ∞.
ALPHA, BETA, GAMMA = 0.01, 1.0, 1.0


@dataclass(frozen=True)
class Variant:
    """How a model differs from torchvision's ShuffleNet V2, whose activations are nn.ReLU(inplace=True)."""

    new: Callable[..., nn.Module] | None = None  # factory handed to replace_activations; None keeps the ReLUs
    per_channel: bool = False  # one parameter per channel at each site, sized from an example batch


ACTIVATIONS = {
    "relu": Variant(),
    "leaky_relu": Variant(partial(nn.LeakyReLU, ALPHA)),
    "silu": Variant(nn.SiLU),
    "gelu": Variant(nn.GELU),
    "mish": Variant(nn.Mish),
    "sqish": Variant(partial(Sqish, ALPHA, BETA, GAMMA)),
    "sqish_learnable": Variant(partial(Sqish, ALPHA, BETA, GAMMA, learnable=True), per_channel=True),
}
# The fixed-vs-learnable study sets one learnable (α, β, γ) per site beside the two Sqish variants above.
STUDY_VARIANTS = {"sqish_learnable_scalar": Variant(partial(Sqish, ALPHA, BETA, GAMMA, learnable=True))}
PARAMETER_STUDY = ("sqish", "sqish_learnable_scalar", "sqish_learnable")
# Modules whose time counts as activation time.
ACTIVATION_MODULES = (nn.ReLU, nn.LeakyReLU, nn.SiLU, nn.GELU, nn.Mish, Sqish)


@dataclass
class Config:
    dataset: str
    data_dir: str
    download: bool
    device: str
    epochs: int
    seeds: int
    activations: list[str]
    gammas: list[float]
    eps: list[float]
    batch_size: int
    lr: float
    weight_decay: float
    limit: int | None  # use only the first N training and N test images (for --quick)
    timing_batches: int
    studies: bool
    threads: int


def gamma_variant(gamma: float) -> str:
    return "sqish" if gamma == GAMMA else f"sqish_gamma={gamma:g}"


def plan(cfg: Config) -> dict[str, Variant]:
    """Every model to train: the chosen activations, then what the studies add to them."""
    variants = {name: ACTIVATIONS[name] for name in cfg.activations}
    for gamma in cfg.gammas:
        variants.setdefault(gamma_variant(gamma), Variant(partial(Sqish, ALPHA, BETA, gamma)))
    if cfg.studies:
        known = ACTIVATIONS | STUDY_VARIANTS
        for name in PARAMETER_STUDY:
            variants.setdefault(name, known[name])
    return variants


# ----------------------------------------------------------------------------------------------- data


def load_data(cfg: Config) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Return x_train, y_train, x_test, y_test, num_classes; images are float (N, 3, 32, 32) in [0, 1]."""
    if cfg.dataset == "digits":
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        images = torch.tensor(digits.images, dtype=torch.float32).div_(16).unsqueeze(1)  # pixels are 0..16
        images = F.interpolate(images, size=32, mode="bilinear", align_corners=False).clamp_(0, 1)
        images = images.expand(-1, 3, -1, -1).contiguous()
        labels = torch.tensor(digits.target)
        train, test = train_test_split(
            range(len(labels)), test_size=0.25, random_state=0, stratify=digits.target
        )
        x_train, y_train, x_test, y_test = images[train], labels[train], images[test], labels[test]
        num_classes = 10
    else:
        dataset_class = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100}[
            cfg.dataset
        ]
        try:
            train, test = (dataset_class(cfg.data_dir, train=t, download=cfg.download) for t in (True, False))
        except RuntimeError as error:
            raise SystemExit(
                f"{cfg.dataset} is not in {cfg.data_dir!r} ({error}); pass --download to fetch it there"
            ) from None

        def tensors(split):  # uint8 (N, 32, 32, 3) images, a list of labels
            return torch.from_numpy(split.data).permute(0, 3, 1, 2).float().div_(255), torch.tensor(split.targets)

        (x_train, y_train), (x_test, y_test) = tensors(train), tensors(test)
        num_classes = len(train.classes)
    if cfg.limit:
        x_train, y_train = x_train[: cfg.limit], y_train[: cfg.limit]
        x_test, y_test = x_test[: cfg.limit], y_test[: cfg.limit]
    return x_train, y_train, x_test, y_test, num_classes


# ------------------------------------------------------------------------------------ model, training


def build_model(spec: Variant, num_classes: int, example: torch.Tensor, seed: int) -> nn.Module:
    # Same seed, same convolution weights for every activation: runs of one seed differ only in it.
    torch.manual_seed(seed)
    model = torchvision.models.shufflenet_v2_x0_5(weights=None, num_classes=num_classes)
    if spec.new is not None:
        replace_activations(model, new=spec.new, example_input=example if spec.per_channel else None)
    return model


def make_optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    # Weight decay on conv and linear weights only: decaying batch-norm scales, biases or the
    # activation's α, β, γ would pull them towards 0 for no benefit (β → 0 turns Sqish into identity).
    params = list(model.parameters())
    return torch.optim.AdamW(
        [
            {"params": [p for p in params if p.dim() > 1], "weight_decay": cfg.weight_decay},
            {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0},
        ],
        lr=cfg.lr,
    )


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    optimizer.step()


def clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def train(model, x, y, cfg: Config, seed: int, device: torch.device, desc: str) -> float:
    """Train in place with AdamW and a one-cycle schedule; return the wall time of the training loop."""
    model.train()
    optimizer = make_optimizer(model, cfg)
    batches = torch.arange(len(y)).split(cfg.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, cfg.lr, total_steps=cfg.epochs * len(batches))
    order = torch.Generator().manual_seed(seed)
    start = clock(device)
    for _ in tqdm(range(cfg.epochs), desc=desc, unit="epoch", leave=False, disable=None):
        for idx in torch.randperm(len(y), generator=order).split(cfg.batch_size):
            idx = idx.to(device)
            train_step(model, optimizer, x[idx], y[idx])
            schedule.step()
    return clock(device) - start


def evaluate(model, x, y, eps: list[float], batch_size: int = 500) -> tuple[float, list[float]]:
    """Clean accuracy and FGSM accuracy at each ε: x' = clamp(x + ε·sign(∇ₓ loss), 0, 1), model in eval mode."""
    model.eval()
    clean, adversarial = 0, [0] * len(eps)
    for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
        xb = xb.clone().requires_grad_()
        logits = model(xb)
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, yb), xb)
        clean += (logits.argmax(1) == yb).sum().item()
        with torch.no_grad():
            for i, e in enumerate(eps):
                adv = (xb + e * grad.sign()).clamp_(0, 1)
                adversarial[i] += (model(adv).argmax(1) == yb).sum().item()
    return clean / len(y), [a / len(y) for a in adversarial]


# ---------------------------------------------------------------------------- time in the activation


class _Stopwatch:
    """Sums the time spent between start() and stop(), synchronising CUDA so kernels are counted."""

    def __init__(self, device: torch.device):
        self.device = device
        self.total = 0.0
        self._started = 0.0

    def start(self) -> None:
        self._started = clock(self.device)

    def stop(self) -> None:
        self.total += clock(self.device) - self._started


class _Enter(torch.autograd.Function):
    """Identity placed before an activation: its forward starts the stopwatch, its backward stops it."""

    @staticmethod
    def forward(ctx, x, watch):
        ctx.watch = watch
        x = x.clone()  # a fresh tensor an in-place activation may overwrite; copied before the clock runs
        watch.start()
        return x

    @staticmethod
    def backward(ctx, grad):
        ctx.watch.stop()
        return grad, None


class _Exit(torch.autograd.Function):
    """Identity placed after an activation: its forward stops the stopwatch, its backward starts it."""

    @staticmethod
    def forward(ctx, y, watch):
        watch.stop()
        ctx.watch = watch
        return y.clone()

    @staticmethod
    def backward(ctx, grad):
        ctx.watch.start()
        return grad, None


def activation_share(model, x, y, cfg: Config, device: torch.device) -> float:
    """Share of a training step's wall time spent in the activation modules' forward and backward.

    A copy of the trained model takes a few more training steps: each batch once plain, timed whole,
    and once with every activation module bracketed by _Enter/_Exit, timing only what runs inside
    the brackets; the share is the ratio of the two medians. Of the nodes ready to run, the autograd
    engine runs the most recently created first, so between _Exit's and _Enter's backward it runs
    exactly the activation's backward, with the accumulation of its parameters' gradients. The
    clones the brackets make fall outside the timed windows.
    """
    model = copy.deepcopy(model).train()
    optimizer = make_optimizer(model, cfg)
    watch = _Stopwatch(device)
    activations = [m for m in model.modules() if isinstance(m, ACTIVATION_MODULES)]

    def enter(module, args):
        return (_Enter.apply(args[0], watch),)

    def exit_(module, args, out):
        return _Exit.apply(out, watch)

    batches = [
        (x[i : i + cfg.batch_size], y[i : i + cfg.batch_size])
        for i in range(0, cfg.batch_size * (cfg.timing_batches + 1), cfg.batch_size)
    ]
    batches = [b for b in batches if len(b[1])]
    train_step(model, optimizer, *batches[0])  # warm-up: allocator, optimizer state
    step_times, inside_times = [], []
    for xb, yb in batches[1:]:
        start = clock(device)
        train_step(model, optimizer, xb, yb)
        step_times.append(clock(device) - start)
        handles = [m.register_forward_pre_hook(enter) for m in activations]
        handles += [m.register_forward_hook(exit_) for m in activations]
        watch.total = 0.0
        train_step(model, optimizer, xb, yb)
        inside_times.append(watch.total)
        for handle in handles:
            handle.remove()
    # Medians: a step slowed by another process on the cores moves one sample, not the estimate.
    return statistics.median(inside_times) / statistics.median(step_times)


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


def max_gap(gamma: float) -> float:
    """Largest |Sqish(x) − max(αx, x)| over x in [−20, 20], in float64."""
    x = torch.linspace(-20, 20, 40001, dtype=torch.float64)
    return (sqish(x, ALPHA, BETA, gamma) - torch.maximum(ALPHA * x, x)).abs().max().item()


# ------------------------------------------------------------------------------------------ reporting


def summarise(runs: list[dict], eps: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation over seeds (std 0 for a single seed) of every metric."""
    metrics = {"accuracy": [r["accuracy"] for r in runs]}
    for i, e in enumerate(eps):
        metrics[f"fgsm_{e:g}"] = [r["fgsm"][i] for r in runs]
    metrics["train_time_s"] = [r["train_time_s"] for r in runs]
    metrics["activation_share"] = [r["activation_share"] for r in runs]
    row = {"seeds": len(runs)}
    for key, values in metrics.items():
        row[f"{key}_mean"] = statistics.fmean(values)
        row[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    if "learned" in runs[0]:
        for name in ("alpha", "beta", "gamma"):
            row[f"learned_{name}_mean"] = statistics.fmean(r["learned"][name]["mean"] for r in runs)
            row[f"learned_{name}_min"] = min(r["learned"][name]["min"] for r in runs)
            row[f"learned_{name}_max"] = max(r["learned"][name]["max"] for r in runs)
    return row


def format_table(title: str, first: str, rows: list[dict], eps: list[float], extra=()) -> str:
    """Render rows of summarise() output, percentages and seconds as mean ± std."""

    def pm(row, key, scale, digits):
        return f"{row[key + '_mean'] * scale:.{digits}f} ± {row[key + '_std'] * scale:.{digits}f}"

    headers = [first, *(h for h, _ in extra), "accuracy %", *(f"FGSM ε={e:g} %" for e in eps)]
    headers += ["train s", "in activation %"]
    lines = []
    for row in rows:
        cells = [row["name"], *(fmt(row) for _, fmt in extra), pm(row, "accuracy", 100, 1)]
        cells += [pm(row, f"fgsm_{e:g}", 100, 1) for e in eps]
        cells += [pm(row, "train_time_s", 1, 1), pm(row, "activation_share", 100, 1)]
        lines.append(cells)
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *lines)]
    render = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join(
        [f"### {title}", "", render(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        + [render(cells) for cells in lines]
    )


def learned_cell(row: dict, name: str) -> str:
    if f"learned_{name}_mean" not in row:
        return "fixed"
    return f"{row[f'learned_{name}_mean']:.3f} [{row[f'learned_{name}_min']:.2f}, {row[f'learned_{name}_max']:.2f}]"


def write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        # Only learnable variants have learned_* columns; other rows leave them empty.
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
        writer.writeheader()
        writer.writerows(rows)


def plot(path: Path, main_rows: list[dict], gamma_rows: list[dict], eps: list[float]) -> None:
    from matplotlib.figure import Figure  # the object API needs no backend: this works headless

    fig = Figure(figsize=(13 if gamma_rows else 8, 4.5), layout="constrained")
    axes = fig.subplots(1, 2 if gamma_rows else 1, squeeze=False)[0]
    ax = axes[0]
    series = [("clean", "accuracy")] + [(f"FGSM ε={e:g}", f"fgsm_{e:g}") for e in eps]
    width = 0.8 / len(series)
    for j, (label, key) in enumerate(series):
        positions = [i + (j - (len(series) - 1) / 2) * width for i in range(len(main_rows))]
        means = [100 * r[f"{key}_mean"] for r in main_rows]
        stds = [100 * r[f"{key}_std"] for r in main_rows]
        ax.bar(positions, means, width, yerr=stds, capsize=2, label=label)
    ax.set_xticks(range(len(main_rows)), [r["name"] for r in main_rows], rotation=25, ha="right")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"ShuffleNet V2 x0.5, mean ± std over {main_rows[0]['seeds']} seed(s)")
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.22), ncols=len(series))
    if gamma_rows:
        ax = axes[1]
        gammas = [r["gamma"] for r in gamma_rows]
        ax.errorbar(
            gammas,
            [100 * r["accuracy_mean"] for r in gamma_rows],
            yerr=[100 * r["accuracy_std"] for r in gamma_rows],
            marker="o",
            capsize=3,
            label="Sqish accuracy",
        )
        leaky = next((r for r in main_rows if r["name"] == "leaky_relu"), None)
        if leaky:
            ax.axhline(100 * leaky["accuracy_mean"], color="grey", linestyle="--", label="leaky ReLU accuracy")
        ax.set_xscale("log")
        ax.set_xticks(gammas, [f"{g:g}" for g in gammas])
        ax.minorticks_off()
        ax.set_xlabel("γ")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title("γ sweep (α = 0.01, β = 1)")
        gap = ax.twinx()
        gap.plot(gammas, [r["max_gap"] for r in gamma_rows], color="C3", marker="s", label="max |f − max(αx, x)|")
        gap.set_ylabel("largest gap to max(αx, x)")
        handles = ax.get_legend_handles_labels()
        more = gap.get_legend_handles_labels()
        ax.legend(
            handles[0] + more[0],
            handles[1] + more[1],
            fontsize="small",
            loc="upper center",
            bbox_to_anchor=(0.5, -0.15),
            ncols=3,
        )
    fig.savefig(path, dpi=120)


def machine(device: torch.device) -> dict:
    info = {
        "platform": platform.platform(),
        "cpu_cores": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


# ----------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> tuple[Config, Path]:
    floats = lambda s: [float(v) for v in s.split(",") if v]  # noqa: E731
    parser = argparse.ArgumentParser(
        prog="sqish-experiment", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--dataset", choices=("digits", "cifar10", "cifar100"), default="digits")
    parser.add_argument("--data-dir", default="data", help="where torchvision's CIFAR datasets are (default: data)")
    parser.add_argument("--download", action="store_true", help="download the CIFAR dataset into --data-dir")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--epochs", type=int, help="default: 5 (1 with --quick)")
    parser.add_argument("--seeds", type=int, help="number of seeds, 0..N-1 (default: 2, 1 with --quick)")
    parser.add_argument(
        "--activations",
        type=lambda s: s.split(","),
        default=list(ACTIVATIONS),
        help="comma-separated subset of: " + ", ".join(ACTIVATIONS),
    )
    parser.add_argument("--gammas", type=floats, help="γ values of the sweep (default: 0.5,1,4)")
    parser.add_argument(
        "--eps", type=floats, default=[0.01, 0.02, 0.05], help="FGSM ε values on inputs in [0, 1] (default: 0.01,0.02,0.05)"
    )
    parser.add_argument("--batch-size", type=int, default=128, help="(default: 128)")
    parser.add_argument(
        "--threads",
        type=int,
        help="torch intra-op threads (default: 1 on the CPU, where this small network gains little from more\n"
        "and collapses when another process competes for the cores; torch's default otherwise)",
    )
    parser.add_argument(
        "--lr", type=float, default=0.02, help="peak learning rate of the one-cycle schedule (default: 0.02)"
    )
    parser.add_argument("--no-studies", action="store_true", help="skip the γ sweep and fixed-vs-learnable study")
    parser.add_argument("--out", type=Path, default=Path("experiment_out"), help="(default: experiment_out)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 epoch, 1 seed, 256 images, 2 γ values")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.activations) - set(ACTIVATIONS))
    if unknown:
        parser.error(f"unknown activation(s) {', '.join(unknown)}; choose from {', '.join(ACTIVATIONS)}")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    default_gammas = [1.0, 8.0] if args.quick else [0.5, 1.0, 4.0]
    cfg = Config(
        dataset=args.dataset,
        data_dir=args.data_dir,
        download=args.download,
        device=args.device,
        epochs=args.epochs or (1 if args.quick else 5),
        seeds=args.seeds or (1 if args.quick else 2),
        activations=args.activations,
        gammas=[] if args.no_studies else (args.gammas or default_gammas),
        studies=not args.no_studies,
        eps=args.eps,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=5e-4,
        limit=256 if args.quick else None,
        timing_batches=2 if args.quick else 3,
        threads=args.threads or (1 if torch.device(args.device).type == "cpu" else torch.get_num_threads()),
    )
    return cfg, args.out


def main(argv: list[str] | None = None) -> None:
    cfg, out = parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        # cuDNN's autotuner picks algorithms by timing them, which is not reproducible.
        with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True):
            run(cfg, out)
    finally:
        torch.set_num_threads(threads)  # main() is also called in-process, by the tests


def run(cfg: Config, out: Path) -> None:
    device = torch.device(cfg.device)
    x_train, y_train, x_test, y_test, num_classes = load_data(cfg)
    x_train, y_train, x_test, y_test = (t.to(device) for t in (x_train, y_train, x_test, y_test))
    example = x_train[:2].cpu()

    variants = plan(cfg)
    started = time.perf_counter()
    # One untimed step first: oneDNN and cuDNN set up their kernels on first use, which would
    # otherwise be billed to the first run's training time.
    warm_up = build_model(ACTIVATIONS["relu"], num_classes, example, 0).to(device)
    train_step(warm_up, make_optimizer(warm_up, cfg), x_train[: cfg.batch_size], y_train[: cfg.batch_size])
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    jobs = [(name, seed) for seed in range(cfg.seeds) for name in variants]
    for name, seed in tqdm(jobs, desc="runs", unit="run", disable=None):
        model = build_model(variants[name], num_classes, example, seed).to(device)
        train_time = train(model, x_train, y_train, cfg, seed, device, desc=f"{name} seed {seed}")
        accuracy, fgsm = evaluate(model, x_test, y_test, cfg.eps)
        record = {
            "seed": seed,
            "accuracy": accuracy,
            "fgsm": fgsm,
            "train_time_s": train_time,
            "activation_share": activation_share(model, x_train, y_train, cfg, device),
        }
        learned = learned_parameters(model)
        if learned:
            record["learned"] = learned
        runs[name].append(record)
    wall = time.perf_counter() - started

    rows = {name: {"name": name, **summarise(runs[name], cfg.eps)} for name in variants}
    main_rows = [rows[n] for n in cfg.activations]
    gamma_rows = [{**rows[gamma_variant(g)], "gamma": g, "max_gap": max_gap(g)} for g in cfg.gammas]
    parameter_rows = [rows[n] for n in PARAMETER_STUDY] if cfg.studies else []

    tables = [format_table("Activations", "activation", main_rows, cfg.eps)]
    if gamma_rows:
        extra = [("γ", lambda r: f"{r['gamma']:g}"), ("max gap", lambda r: f"{r['max_gap']:.4f}")]
        tables.append(format_table("γ sweep of fixed Sqish (α = 0.01, β = 1)", "variant", gamma_rows, cfg.eps, extra))
    if parameter_rows:
        learned = [(f"learned {p}", partial(learned_cell, name=p)) for p in ("alpha", "beta", "gamma")]
        tables.append(format_table("Fixed vs learnable Sqish", "variant", parameter_rows, cfg.eps, learned))

    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "results.csv", main_rows)
    if gamma_rows:
        write_csv(out / "gamma_sweep.csv", gamma_rows)
    if parameter_rows:
        write_csv(out / "parameters.csv", parameter_rows)
    (out / "results.json").write_text(
        json.dumps(
            {
                "config": asdict(cfg),
                "machine": machine(device),
                "wall_time_s": wall,
                "runs": runs,
                "activations": main_rows,
                "gamma_sweep": gamma_rows,
                "parameters": parameter_rows,
            },
            indent=2,
        )
    )
    plot(out / "results.png", main_rows, gamma_rows, cfg.eps)

    print(f"\n{cfg.dataset}, {cfg.epochs} epochs, {cfg.seeds} seed(s), {device}; {wall:.0f} s\n")
    print("\n\n".join(tables))
    print(f"\nwritten to {out}/")


if __name__ == "__main__":
    main()
