"""Every (activation, seed) training, in this process or spread over worker processes."""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from functools import lru_cache

import torch
from tqdm import tqdm

from sqish_ext.experiment import data, studies
from sqish_ext.experiment.attack import accuracies
from sqish_ext.experiment.models import ACTIVATIONS, BASELINE, NULL_CONTROL, NULL_TWIN, Variant, build_model
from sqish_ext.experiment.timing import activation_time
from sqish_ext.experiment.training import Recipe, make_optimizer, train, train_step


@dataclass(frozen=True)
class Config:
    dataset: str
    data_dir: str
    download: bool
    device: str
    seeds: int
    activations: tuple[str, ...]
    eps: tuple[float, ...]
    pgd_eps: float
    recipe: Recipe
    width: str
    limit: int | None  # use only the first N training and N test images (for --quick)
    timing_batches: int
    studies: bool
    gammas: tuple[float, ...]
    threads: int
    workers: int


def plan(cfg: Config) -> dict[str, Variant]:
    """Every model a seed trains: the baseline, the chosen activations, the null control, the studies'."""
    known = ACTIVATIONS | NULL_TWIN
    names = [BASELINE, *(n for n in ACTIVATIONS if n in cfg.activations), *NULL_CONTROL]
    if cfg.studies:
        names += [*studies.PARAMETER_STUDY, *map(studies.gamma_variant, cfg.gammas)]
        known |= studies.variants(cfg.gammas)
    return {name: known[name] for name in dict.fromkeys(names)}


@lru_cache(maxsize=1)  # runs come seed by seed: one split serves all the models of a seed
def _load(cfg: Config, seed: int) -> data.Data:
    d = data.load(cfg.dataset, seed, cfg.data_dir, cfg.download, cfg.limit)
    return data.Data(*(t.to(cfg.device) for t in (d.x_train, d.y_train, d.x_test, d.y_test)), d.num_classes)


def run_one(cfg: Config, name: str, seed: int, progress: bool = False) -> dict:
    """Train one model; return its accuracies, training time, time in the activations, learned parameters."""
    d = _load(cfg, seed)
    model = build_model(plan(cfg)[name], cfg.width, d.num_classes, d.x_train[:2].cpu(), seed).to(cfg.device)
    desc = f"{name} seed {seed}" if progress else None
    record = {"seed": seed, "train_time_s": train(model, d.x_train, d.y_train, cfg.recipe, seed, desc)}
    record["accuracy"] = accuracies(model, d.x_test, d.y_test, list(cfg.eps), cfg.pgd_eps, seed)
    # The first batches of the training set, from its start again if it holds fewer.
    order = torch.arange((cfg.timing_batches + 1) * cfg.recipe.batch_size, device=cfg.device) % len(d.y_train)
    batches = [(d.x_train[idx], d.y_train[idx]) for idx in order.split(cfg.recipe.batch_size)]
    record["timing"] = activation_time(model, batches, cfg.recipe)
    learned = studies.learned_parameters(model)
    if learned:
        record["learned"] = learned
    return record


def _prepare_process(cfg: Config) -> None:
    """Thread count, then one untimed step: oneDNN and cuDNN set up their kernels on first use, which
    would otherwise be billed to the first run's training time."""
    torch.set_num_threads(cfg.threads)
    d = _load(cfg, 0)
    model = build_model(ACTIVATIONS[BASELINE], cfg.width, d.num_classes, d.x_train[:2].cpu(), 0).to(cfg.device)
    size = cfg.recipe.batch_size
    train_step(model, make_optimizer(model, cfg.recipe), d.x_train[:size], d.y_train[:size])


def run_all(cfg: Config) -> dict[str, list[dict]]:
    """Every model of plan(cfg) on every seed; runs[name] lists the records by seed.

    With one thread per process each run is reproducible bit for bit, so the result does not depend on
    how many workers share the runs. Workers are spawned, not forked: a fork of a process whose
    OpenMP pool has started may hang.
    """
    jobs = [(name, seed) for seed in range(cfg.seeds) for name in plan(cfg)]
    progress = tqdm(total=len(jobs), desc="runs", unit="run", disable=None)
    done = {}
    if cfg.workers == 1:
        _prepare_process(cfg)
        for job in jobs:
            done[job] = run_one(cfg, *job, progress=True)
            progress.update()
    else:
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(cfg.workers, mp_context=context, initializer=_prepare_process, initargs=(cfg,))
        with pool:
            futures = {pool.submit(run_one, cfg, *job): job for job in jobs}
            for future in as_completed(futures):
                done[futures[future]] = future.result()
                progress.update()
    progress.close()
    return {name: [done[(name, seed)] for seed in range(cfg.seeds)] for name in plan(cfg)}
