"""How the call pattern moves a small input's cost: the op's kernel at 2^16 float32
elements against F.silu, called back to back, interleaved with other work, and
after an idle pause; and what autograd.Function.apply costs with a separate
setup_context against a forward that takes ctx (the form sqish_ext's eager path uses).

    python bench/bench_call_pattern.py

Medians over interleaved samples, as ratios; docs/benchmarks.md ("Per-call cost") cites them.
"""
import statistics
import time

import torch
import torch.nn.functional as F

import sqish_ext  # noqa: F401  (registers torch.ops.sqish)

SAMPLES = 300
below_autograd = torch._C._AutoDispatchBelowAutograd


def kernel_against_silu(x, other_work, pause):
    """Median seconds of one call of each, with other_work and a pause before each call."""
    calls = {"F.silu": lambda: F.silu(x), "sqish.float": lambda: torch.ops.sqish.sqish.float(x, 0.01, 1.0, 1.0)}
    samples = {name: [] for name in calls}
    for _ in range(SAMPLES):
        for name, call in calls.items():
            other_work()
            if pause:
                time.sleep(pause)
            start = time.perf_counter()
            call()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(s) for name, s in samples.items()}


class WithSetupContext(torch.autograd.Function):
    @staticmethod
    def forward(x, alpha, beta, gamma):
        with below_autograd():
            return torch.ops.sqish.sqish.float(x, alpha, beta, gamma)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])


class ForwardTakesCtx(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, alpha, beta, gamma):
        ctx.save_for_backward(x)
        with below_autograd():
            return torch.ops.sqish.sqish.float(x, alpha, beta, gamma)


def apply_cost():
    x = torch.randn(8, requires_grad=True)
    calls = {"forward takes ctx": lambda: ForwardTakesCtx.apply(x, 0.01, 1.0, 1.0),
             "separate setup_context": lambda: WithSetupContext.apply(x, 0.01, 1.0, 1.0)}
    samples = {name: [] for name in calls}
    for _ in range(SAMPLES):
        for name, call in calls.items():
            start = time.perf_counter()
            for _ in range(100):
                call()
            samples[name].append((time.perf_counter() - start) / 100)
    return {name: statistics.median(s) for name, s in samples.items()}


def main():
    x = torch.randn(2**16) * 3
    scratch = torch.randn(2**20)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; 2^16 float32 elements, "
          f"medians of {SAMPLES} interleaved samples")
    print()
    print("| call pattern | F.silu µs | sqish.float µs | sqish.float / F.silu |")
    print("|---|---|---|---|")
    with torch.no_grad(), below_autograd():
        for pattern, other_work, pause in (
            ("back to back", lambda: None, 0),
            ("after a pass over 4 MiB of other data", lambda: scratch.mul_(1.0), 0),
            ("after a 1 ms pause", lambda: None, 1e-3),
        ):
            t = kernel_against_silu(x, other_work, pause)
            print(f"| {pattern} | {t['F.silu'] * 1e6:.1f} | {t['sqish.float'] * 1e6:.1f} "
                  f"| {t['sqish.float'] / t['F.silu']:.2f} |")
    t = apply_cost()
    print()
    print("| autograd.Function.apply, 8 elements, forward only | µs | / forward takes ctx |")
    print("|---|---|---|")
    for name, seconds in t.items():
        print(f"| {name} | {seconds * 1e6:.1f} | {seconds / t['forward takes ctx']:.2f} |")


if __name__ == "__main__":
    main()
