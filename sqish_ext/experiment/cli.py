"""The command line: python -m sqish_ext.experiment, or sqish-experiment."""

import argparse
import json
import os
import platform
import resource
import shlex
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torchvision

import sqish_ext
from sqish_ext.experiment import data, studies
from sqish_ext.experiment.attack import metric_names
from sqish_ext.experiment.models import ACTIVATIONS, WIDTHS
from sqish_ext.experiment.plots import plot_differences
from sqish_ext.experiment.report import analyse, render, write_csv
from sqish_ext.experiment.runs import Config, run_all
from sqish_ext.experiment.training import RECIPES

DESCRIPTION = """\
Train a CIFAR-style ShuffleNet V2 once per activation and seed, and compare each activation with ReLU
seed by seed: clean accuracy, FGSM and PGD accuracy in the image's own pixel space, and the time spent
in the activation. A null control (nn.SiLU against Sqish(0, 1, ½), one function) measures the noise.

    python -m sqish_ext.experiment              # digits, offline, about 4 minutes on two idle CPU cores
    python -m sqish_ext.experiment --quick      # smoke test
    python -m sqish_ext.experiment --device cuda --dataset cifar100 --data-dir ~/data
"""
# FGSM ε per dataset, in pixel units, small enough that accuracy stays off chance; the middle one is
# also PGD's. Digits have 17 grey levels, 1/16 apart; at ε = 0.2 the digits network is at chance.
# Standard-trained CIFAR networks are near chance by 8/255.
EPS = {"digits": (0.025, 0.05, 0.1), "cifar": (1 / 255, 2 / 255, 4 / 255)}
# What the default run fits in its time on two CPU cores; leaky_relu and gelu are there for the asking.
DEFAULT_ACTIVATIONS = ("relu", "silu", "mish", "sqish", "sqish_learnable")


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v)


def parse_args(argv: list[str] | None) -> tuple[Config, Path]:
    parser = argparse.ArgumentParser(prog="sqish-experiment", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=data.DATASETS, default="digits")
    parser.add_argument("--data-dir", default="data", help="where torchvision's CIFAR datasets are (default: data)")
    parser.add_argument("--download", action="store_true", help="download the CIFAR dataset into --data-dir")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--seeds", type=int, help="number of seeds, 0..N-1, at least 2 (default: 5, 2 with --quick)")
    parser.add_argument("--activations", type=lambda s: tuple(s.split(",")), default=DEFAULT_ACTIVATIONS,
                        help="comma-separated, from: " + ", ".join(ACTIVATIONS) + " (default: "
                        + ",".join(DEFAULT_ACTIVATIONS) + "; relu, silu and the null control always run)")
    parser.add_argument("--eps", type=_floats, help="FGSM ε in pixel units (default: 0.025,0.05,0.1 for digits, "
                        "1/255,2/255,4/255 for CIFAR)")
    parser.add_argument("--pgd-eps", type=float, help="ε of the PGD-10 attack (default: the middle FGSM ε)")
    parser.add_argument("--epochs", type=int, help="default: 6 for digits, 100 for CIFAR, 1 with --quick")
    parser.add_argument("--batch-size", type=int, help="default: 128")
    parser.add_argument("--lr", type=float, help="peak learning rate of the one-cycle schedule "
                        "(default: 0.02 with AdamW for digits, 0.1 with SGD for CIFAR)")
    parser.add_argument("--width", choices=WIDTHS, default="0.5", help="ShuffleNet V2 width multiplier (default: 0.5)")
    parser.add_argument("--threads", type=int, help="torch threads per process (default: 1 on the CPU, where this "
                        "small network gains more from a process per core; torch's default otherwise)")
    parser.add_argument("--workers", type=int,
                        help="processes sharing the runs (default: one per CPU core on the CPU, 1 on CUDA)")
    parser.add_argument("--studies", action="store_true", help="also run the γ sweep and the fixed-vs-learnable study")
    parser.add_argument("--gammas", type=_floats, default=studies.GAMMAS,
                        help="γ values of the sweep (default: 0.5,1,4)")
    parser.add_argument("--out", type=Path, default=Path("experiment_out"), help="(default: experiment_out)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 epoch, 2 seeds, 128 images")
    args = parser.parse_args(argv)

    unknown = sorted(set(args.activations) - set(ACTIVATIONS))
    if unknown:
        parser.error(f"unknown activation(s) {', '.join(unknown)}; choose from {', '.join(ACTIVATIONS)}")
    seeds = args.seeds or (2 if args.quick else 5)
    if seeds < 2:
        parser.error("--seeds must be at least 2: the paired intervals need two differences")
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(device)
    except RuntimeError:
        parser.error(f"--device {device}: not a torch device (cpu, cuda, cuda:1, ...)")
    if torch.device(device).type == "cuda":
        if not torch.cuda.is_available():
            parser.error(f"--device {device}: this torch sees no CUDA device (torch.cuda.is_available() is False)")
        if sqish_ext.CUDA_KERNELS_OFF is not None:
            parser.error(f"--device {device}: sqish_ext's CUDA kernels are off: {sqish_ext.CUDA_KERNELS_OFF}")
    on_cpu = torch.device(device).type == "cpu"
    family = "digits" if args.dataset == "digits" else "cifar"
    recipe = RECIPES[family]
    recipe = replace(
        recipe,
        epochs=args.epochs or (1 if args.quick else recipe.epochs),
        batch_size=args.batch_size or recipe.batch_size,
        lr=args.lr or recipe.lr,
    )
    eps = args.eps or EPS[family]
    cfg = Config(
        dataset=args.dataset,
        data_dir=args.data_dir,
        download=args.download,
        device=device,
        seeds=seeds,
        activations=args.activations,
        eps=eps,
        pgd_eps=args.pgd_eps or eps[len(eps) // 2],
        recipe=recipe,
        width=args.width,
        limit=128 if args.quick else None,
        timing_batches=1 if args.quick else 3,
        studies=args.studies,
        gammas=args.gammas,
        threads=args.threads or (1 if on_cpu else torch.get_num_threads()),
        workers=args.workers or (os.cpu_count() if on_cpu else 1),
    )
    return cfg, args.out


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine(cfg: Config) -> dict:
    return {
        "cpu": _cpu_name(),
        "cpu_cores": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "device": cfg.device if cfg.device == "cpu" else torch.cuda.get_device_name(cfg.device),
        "torch_threads": cfg.threads,
        "workers": cfg.workers,
        "load_average_before": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    cfg, out = parse_args(argv)
    threads = torch.get_num_threads()
    try:
        # cuDNN's autotuner picks algorithms by timing them, which is not reproducible.
        with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True):
            results = run(cfg, shlex.join(["python", "-m", "sqish_ext.experiment", *argv]))
    finally:
        torch.set_num_threads(threads)  # main() is also called in-process, by the tests
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    write_csv(out / "runs.csv", results["runs"], results["analysis"])
    plot_differences(results, out / "results.png")
    report = render(results, "results.png")
    (out / "report.md").write_text(report)
    print("\n" + report + f"\nwritten to {out}/")


def run(cfg: Config, command: str) -> dict:
    info = machine(cfg)
    started = time.perf_counter()
    runs = run_all(cfg)
    wall = time.perf_counter() - started
    info["load_average_after"] = os.getloadavg()
    # The workers have been joined, so the children's usage holds theirs.
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    info["cpu_time_s"] = sum(u.ru_utime + u.ru_stime for u in usage)
    metrics = metric_names(list(cfg.eps), cfg.pgd_eps)
    return {
        "command": command,
        "config": asdict(cfg),
        "machine": info,
        "wall_time_s": wall,
        "runs": runs,
        "analysis": analyse(runs, metrics, cfg.gammas, cfg.studies),
    }
