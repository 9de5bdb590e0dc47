"""Time spent in the activations during a training step, measured two ways.

- torch.profiler: the activation ops' own time (their kernels), forward and backward.
- Clock brackets around each activation module: everything a call costs, kernels plus dispatch and
  autograd overhead, which for a network this small on the CPU is a large part.
"""

import contextlib
import copy
import os
import statistics
import sys

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from sqish_ext.experiment.models import ACTIVATION_MODULES
from sqish_ext.experiment.training import Recipe, clock, make_optimizer, train_step

# The ops the activations of models.ACTIVATIONS dispatch to, forward and backward, as the profiler names them.
ACTIVATION_OPS = {
    f"aten::{op}"
    for name in ("relu", "leaky_relu", "silu", "gelu", "mish")
    for op in (name, f"{name}_", f"{name}_backward")
} | {"aten::threshold_backward", "sqish::sqish", "sqish::sqish_", "sqish::sqish_backward"}


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


@contextlib.contextmanager
def _bracketed(model: nn.Module, watch: _Stopwatch):
    """Every activation module of model between an _Enter and an _Exit.

    Of the nodes ready to run, the autograd engine runs the most recently created first, so between
    _Exit's and _Enter's backward it runs exactly the activation's backward, with the accumulation of
    its parameters' gradients. The clones the brackets make fall outside the timed windows.
    """
    activations = [m for m in model.modules() if isinstance(m, ACTIVATION_MODULES)]
    handles = [m.register_forward_pre_hook(lambda m, args: (_Enter.apply(args[0], watch),)) for m in activations]
    handles += [m.register_forward_hook(lambda m, args, out: _Exit.apply(out, watch)) for m in activations]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def _quiet_stderr():
    """Kineto writes a line to file descriptor 2 each time a profile starts or stops, past sys.stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _activation_op_time(events, device: torch.device) -> tuple[float, float]:
    """Seconds of the activation ops, forward and backward, counting an op inside another one once."""
    forward = backward = 0.0
    for event in events:
        if event.name not in ACTIVATION_OPS:
            continue
        parent = event.cpu_parent
        while parent is not None and parent.name not in ACTIVATION_OPS:
            parent = parent.cpu_parent
        if parent is not None:
            continue
        seconds = (event.device_time_total if device.type == "cuda" else event.cpu_time_total) / 1e6
        if event.name.endswith("_backward"):
            backward += seconds
        else:
            forward += seconds
    return forward, backward


def activation_time(model: nn.Module, batches, recipe: Recipe) -> dict[str, float]:
    """Milliseconds per training step: the whole step, and the activations' part of it, both ways.

    A copy of the trained model (with its own optimizer, then discarded) takes each batch twice:
    plain and timed whole, then with the clock brackets; the figures are medians over the batches,
    so that a step slowed by another process moves one sample, not the estimate. Then one step runs
    under the profiler: its ops' times are the kernels' own and vary little from step to step, and
    collecting a step's ten thousand events takes longer than the step. The first batch is a warm-up
    (allocator, optimizer state) and is not counted.
    """
    model = copy.deepcopy(model).train()
    optimizer = make_optimizer(model, recipe)
    device = batches[0][0].device
    watch = _Stopwatch(device)
    train_step(model, optimizer, *batches[0])
    step, hooks = [], []
    for xb, yb in batches[1:]:
        start = clock(device)
        train_step(model, optimizer, xb, yb)
        step.append(clock(device) - start)
        watch.total = 0.0
        with _bracketed(model, watch):
            train_step(model, optimizer, xb, yb)
        hooks.append(watch.total)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with _quiet_stderr(), profile(activities=activities) as prof:
        train_step(model, optimizer, *batches[-1])
        clock(device)
    forward, backward = _activation_op_time(prof.events(), device)
    return {
        "step_ms": 1e3 * statistics.median(step),
        "hooks_ms": 1e3 * statistics.median(hooks),
        "profiler_forward_ms": 1e3 * forward,
        "profiler_backward_ms": 1e3 * backward,
        "profiler_ms": 1e3 * (forward + backward),
    }
