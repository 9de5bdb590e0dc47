"""CPU benchmark: the extension against F.silu, the eager composite formula and
torch.compile of that formula, forward and forward+backward, side by side.

Every variant runs once per round, rounds interleave the variants, and the table
reports medians and ratios, so that a noisy machine affects all alike.

    python bench/bench_cpu.py                # the documented run (docs/benchmarks.md)
    python bench/bench_cpu.py --quick        # a few seconds, for a smoke test
    python bench/bench_cpu.py --json out.json    # also write every row (bench/compare_builds.py)
"""
import argparse
import contextlib
import json
import platform
import resource
import statistics
import time

import torch
import torch.nn.functional as F

import sqish_ext

ALPHA, BETA, GAMMA = 0.01, 1.0, 1.0


def composite(x, alpha, beta, gamma):
    """Sqish as a user would write it with torch ops."""
    return alpha * x + (1 - alpha) * x / (1 + beta * torch.exp(-2 * gamma * (1 - alpha) * x))


# Specialised to each size, dtype and grad mode, as Inductor is at its fastest;
# that is one compilation per benchmark row, more than dynamo's default limit.
torch._dynamo.config.recompile_limit = 64
compiled_composite = torch.compile(composite, fullgraph=True, dynamic=False)


def parameters(learnable):
    return [torch.tensor(v, requires_grad=learnable) for v in (ALPHA, BETA, GAMMA)]


def forward_variants(x):
    params = parameters(False)
    return {
        "sqish_ext": lambda: sqish_ext.sqish(x, ALPHA, BETA, GAMMA),
        "F.silu": lambda: F.silu(x),
        "compiled composite": lambda: compiled_composite(x, *params),
        "eager composite": lambda: composite(x, *params),
    }


def inplace_variants(x, source):
    """In-place ops are timed on a buffer refreshed (untimed) before each call."""
    return {
        "sqish_ext": (lambda: sqish_ext.sqish_(x, ALPHA, BETA, GAMMA), lambda: x.copy_(source)),
        "F.silu": (lambda: F.silu(x, inplace=True), lambda: x.copy_(source)),
    }


def training_step(fn, x, grad, *params):
    """One forward+backward of fn(x, *params), gradients cleared first."""
    def run():
        x.grad = None
        for p in params:
            p.grad = None
        fn(x, *params).backward(grad)
    return run


def training_variants(x, grad):
    learnable = parameters(True)

    def step(fn, *params):
        return training_step(fn, x, grad, *params)

    return {
        "sqish_ext": step(sqish_ext.sqish, *learnable),
        "F.silu": step(lambda t: F.silu(t)),
        "compiled composite": step(compiled_composite, *learnable),
        "eager composite": step(composite, *learnable),
    }


# Per-channel parameters at CNN shapes: (N, C, H, W) in NCHW and channels_last.
CHANNEL_SHAPES = [(32, 64, 56, 56), (8, 256, 14, 14)]


def channel_parameters(channels, learnable):
    values = [torch.linspace(0.0, 0.1, channels), torch.linspace(0.5, 2.0, channels),
              torch.linspace(0.5, 1.5, channels)]
    return [v.requires_grad_(learnable) for v in values]


def per_channel_composite(x, alpha, beta, gamma):
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return composite(x, alpha.reshape(shape), beta.reshape(shape), gamma.reshape(shape))


compiled_per_channel_composite = torch.compile(per_channel_composite, fullgraph=True, dynamic=False)


def per_channel_variants(x, grad, training):
    channels = x.shape[1]
    prelu_weight = torch.full((channels,), 0.25, dtype=x.dtype, requires_grad=training)
    params = channel_parameters(channels, training)

    def call(fn, *args):
        return training_step(fn, x, grad, *args) if training else lambda: fn(x, *args)

    return {
        "sqish_ext": call(sqish_ext.sqish, *params),
        "F.silu": call(lambda t: F.silu(t)),
        "compiled composite": call(compiled_per_channel_composite, *params),
        "F.prelu": call(F.prelu, prelu_weight),
    }


def run_per_channel(dtypes, rounds):
    rows = []
    for dtype in dtypes:
        for shape in CHANNEL_SHAPES:
            for layout, memory_format in (("NCHW", torch.contiguous_format), ("channels_last", torch.channels_last)):
                x = torch.randn(shape).mul_(3).to(dtype).contiguous(memory_format=memory_format)
                grad = torch.randn(shape).to(dtype).contiguous(memory_format=memory_format)
                for mode, training in (("forward", False), ("forward+backward", True)):
                    xt = x.clone().requires_grad_() if training else x
                    times = time_interleaved(per_channel_variants(xt, grad, training), rounds)
                    rows.append((str(dtype).replace("torch.", ""), "×".join(map(str, shape)), layout, mode, times))
    return rows


def print_per_channel_table(rows):
    print()
    print("Per-channel learnable α, β, γ (C values each) at CNN shapes:")
    print()
    print("| dtype | shape | layout | mode | sqish_ext ms | ext / silu | ext / compiled | ext / prelu |")
    print("|---|---|---|---|---|---|---|---|")
    for dtype, shape, layout, mode, t in rows:
        ext = t["sqish_ext"]
        print(f"| {dtype} | {shape} | {layout} | {mode} | {ext * 1e3:.3f} | {ext / t['F.silu']:.2f} "
              f"| {ext / t['compiled composite']:.2f} | {ext / t['F.prelu']:.2f} |")


def time_interleaved(variants, rounds, warmup=2, calls=1):
    """Median seconds per call of each variant; a variant is a callable or (callable,
    untimed setup). Each sample times `calls` calls in a row. Each round starts one
    variant later than the one before, so that no variant always runs right after the
    same other one (whose temporaries evict the caches that small inputs live in)."""
    variants = {k: v if isinstance(v, tuple) else (v, None) for k, v in variants.items()}
    samples = {name: [] for name in variants}
    names = list(variants)
    for r in range(warmup + rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn, setup = variants[name]
            if setup is not None:
                setup()
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            elapsed = (time.perf_counter() - start) / calls
            if r >= warmup:
                samples[name].append(elapsed)
    return {name: statistics.median(s) for name, s in samples.items()}


def run(sizes, dtypes, rounds):
    rows = []
    for dtype in dtypes:
        for exponent in sizes:
            n = 2 ** exponent
            x = torch.randn(n).mul_(3).to(dtype)
            source = x.clone()
            grad = torch.randn(n).to(dtype)
            xg = x.clone().requires_grad_()
            for mode, variants in (
                ("forward", forward_variants(x)),
                ("forward in-place", inplace_variants(x.clone(), source)),
                ("forward+backward", training_variants(xg, grad)),
            ):
                times = time_interleaved(variants, rounds)
                rows.append((str(dtype).replace("torch.", ""), exponent, mode, times))
    return rows


def page_faults(fn):
    """Minor page faults of one call (the first touch of fresh output pages)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    fn()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


class BareFunction(torch.autograd.Function):
    """The floor of an autograd layer: a bare autograd.Function around the two ops
    (0-dim tensor parameters, fixed), below their own autograd kernels."""

    @staticmethod
    def forward(ctx, x, alpha, beta, gamma):
        ctx.save_for_backward(x, alpha, beta, gamma)
        with torch._C._AutoDispatchBelowAutograd():
            return torch.ops.sqish.sqish.default(x, alpha, beta, gamma)

    @staticmethod
    def backward(ctx, grad_output):
        with torch._C._AutoDispatchBelowAutograd():
            grad_x = torch.ops.sqish.sqish_backward.default(grad_output, *ctx.saved_tensors, False)[0]
        return grad_x, None, None, None


# 8 elements, as (2, 4) so that per-channel parameters have 4 values.
PER_CALL_SHAPE = (2, 4)


def per_call_variants():
    """mode -> {call: fn}: the per-call cost where the data is negligible."""
    x = torch.randn(PER_CALL_SHAPE)
    xg = x.clone().requires_grad_()
    ones = torch.ones(PER_CALL_SHAPE)
    fixed, learnable = sqish_ext.Sqish(), sqish_ext.Sqish(learnable=True)
    per_channel = sqish_ext.Sqish(learnable=True, num_parameters=PER_CALL_SHAPE[1])
    fixed_per_channel = sqish_ext.Sqish(num_parameters=PER_CALL_SHAPE[1])
    prelu = torch.nn.PReLU()
    tensors = parameters(False)

    def step(fn, module=None):
        params = list(module.parameters()) if module is not None else []
        return training_step(lambda t, *_: fn(t), xg, ones, *params)

    return {
        "no_grad": {
            "F.silu": lambda: F.silu(x),
            "Sqish()": lambda: fixed(x),
            "sqish_ext.sqish(x), floats": lambda: sqish_ext.sqish(x),
            "sqish_ext.sqish(x, 0-dim tensors)": lambda: sqish_ext.sqish(x, *tensors),
            "torch.ops.sqish.sqish(x, 0-dim tensors)": lambda: torch.ops.sqish.sqish(x, *tensors),
            "Sqish(num_parameters=4)": lambda: fixed_per_channel(x),
        },
        "grad, forward only": {
            "F.silu": lambda: F.silu(xg),
            "Sqish()": lambda: fixed(xg),
            "Sqish(learnable=True)": lambda: learnable(xg),
            "bare autograd.Function": lambda: BareFunction.apply(xg, *tensors),
        },
        "forward+backward": {
            "F.silu": step(F.silu),
            "Sqish()": step(fixed),
            "Sqish(learnable=True)": step(learnable, learnable),
            "Sqish(learnable=True, num_parameters=4)": step(per_channel, per_channel),
            "bare autograd.Function": step(lambda t: BareFunction.apply(t, *tensors)),
            "nn.PReLU()": step(prelu, prelu),
        },
    }


def fixed_costs(rounds):
    """Per-call seconds of each call in each mode (8 elements), all in one
    interleaved run per mode, and the page faults of one out-of-place forward at
    2^24 elements."""
    times = {}
    for mode, variants in per_call_variants().items():
        # no_grad is entered once around the timing, not per call.
        with torch.no_grad() if mode == "no_grad" else contextlib.nullcontext():
            times[mode] = time_interleaved(variants, rounds * 4, calls=200)
    big = torch.randn(2**24)
    faults = {"sqish_ext": page_faults(lambda: sqish_ext.sqish(big)),
              "F.silu": page_faults(lambda: F.silu(big))}
    return times, faults


def print_fixed_costs(times, faults):
    print()
    print("| per call, 8 elements | call | µs | / F.silu |")
    print("|---|---|---|---|")
    for mode, calls in times.items():
        for name, t in calls.items():
            print(f"| {mode} | {name} | {t * 1e6:.1f} | {t / calls['F.silu']:.2f} |")
    print()
    print("| page faults of one forward at 2^24 float32 elements | count |")
    print("|---|---|")
    for name, count in faults.items():
        print(f"| {name} | {count} |")


def print_table(rows, rounds):
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, CPU kernel level {torch.backends.cpu.get_cpu_capability()}; "
          f"medians of {rounds} interleaved rounds")
    print()
    print("| dtype | n | mode | sqish_ext ms | F.silu ms | ext / silu | compiled ms | ext / compiled "
          "| eager ms | eager / ext |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for dtype, exponent, mode, t in rows:
        ext, silu = t["sqish_ext"], t["F.silu"]
        compiled = t.get("compiled composite")
        eager = t.get("eager composite")
        cells = [dtype, f"2^{exponent}", mode, f"{ext * 1e3:.3f}", f"{silu * 1e3:.3f}", f"{ext / silu:.2f}"]
        cells += [f"{compiled * 1e3:.3f}", f"{ext / compiled:.2f}"] if compiled else ["", ""]
        cells += [f"{eager * 1e3:.3f}", f"{eager / ext:.1f}"] if eager else ["", ""]
        print("| " + " | ".join(cells) + " |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 20, 24], help="log2 of element counts")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="small sizes, few rounds, no per-channel rows")
    parser.add_argument("--no-per-channel", action="store_true", help="skip the per-channel CNN-shape rows")
    parser.add_argument("--json", help="also write every row's medians to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.rounds, args.no_per_channel = [16], 3, True
    dtypes = [getattr(torch, d) for d in args.dtypes]
    rows = run(args.sizes, dtypes, args.rounds)
    print_table(rows, args.rounds)
    channel_rows = [] if args.no_per_channel else run_per_channel(dtypes, args.rounds)
    if channel_rows:
        print_per_channel_table(channel_rows)
    times, faults = fixed_costs(args.rounds)
    print_fixed_costs(times, faults)
    if args.json:
        record = {
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "rows": [{"dtype": d, "n": f"2^{e}", "mode": m, "seconds": t} for d, e, m, t in rows],
            "per_channel": [{"dtype": d, "shape": sh, "layout": lay, "mode": m, "seconds": t}
                            for d, sh, lay, m, t in channel_rows],
            "per_call_seconds": times,
        }
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
