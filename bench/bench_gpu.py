"""GPU check and benchmark of the Sqish CUDA kernels.

First opcheck on CUDA samples and a comparison with the CPU op at the benchmark's
dtypes (so the numbers below belong to kernels that are right), then timings at
2^28 elements for float32 and bfloat16, medians of CUDA-event times:
  copy      a device-to-device copy of x: the bandwidth ceiling, measured here;
  forward   sqish vs F.silu;
  backward  sqish_backward with learnable scalar parameters (grad_input and the
            three parameter gradients in one pass) vs aten.silu_backward;
  fwd+bwd   sqish forward and backward through autograd vs torch.compile of the
            composite Sqish (torch ops) forward and backward.
Bandwidth counts each byte read and written once. Prints the table last, with
PASS/MISS per target; exits 1 if a check fails (not for a MISS).

    python bench/bench_gpu.py [--json OUT.json]
"""
import argparse
import json
import statistics
import sys

import torch
import torch.nn.functional as F

import sqish_ext  # noqa: F401  (registers the ops)
from sqish_ext.reference import sqish_reference
from sqish_ext.testing import make_params, opcheck_samples

NUMEL = 1 << 28
REPEATS = 25
WARMUP = 3
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def median_ms(fn):
    """Median time of fn in milliseconds, from CUDA events around each call."""
    for _ in range(WARMUP):
        fn()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(REPEATS)]
    for start, end in events:
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return statistics.median(start.elapsed_time(end) for start, end in events)


def check_kernels():
    for op, args, test_utils in opcheck_samples():
        torch.library.opcheck(op, args, test_utils=test_utils)
    for dtype in DTYPES.values():
        x = torch.randn(1 << 20, device="cuda", dtype=dtype) * 4
        g = torch.randn_like(x)
        params = make_params(1, (False,) * 3)
        cpu = [p.cpu() for p in params]
        tol = dict(rtol=1.6e-2, atol=1e-3) if dtype == torch.bfloat16 else dict(rtol=2e-5, atol=1e-6)
        torch.testing.assert_close(torch.ops.sqish.sqish(x, *params).cpu(), torch.ops.sqish.sqish(x.cpu(), *cpu), **tol)
        got = torch.ops.sqish.sqish_backward(g, x, *params, True)
        want = torch.ops.sqish.sqish_backward(g.cpu(), x.cpu(), *cpu, True)
        torch.testing.assert_close(got[0].cpu(), want[0], **tol)
        for a, b in zip(got[1:], want[1:]):
            torch.testing.assert_close(a.cpu(), b, rtol=1e-4, atol=1e-3)
    print("opcheck on CUDA samples and agreement with the CPU op: OK")


def composite_in_opmath(x, a, b, c):
    """The composite on x's opmath (float32 for bfloat16), rounded once, as the op."""
    return sqish_reference(x.float(), a, b, c).to(x.dtype)


def measure(dtype):
    x = torch.randn(NUMEL, device="cuda", dtype=dtype)
    g = torch.randn_like(x)
    copy_dst = torch.empty_like(x)
    params = make_params(1, (False,) * 3, requires_grad=True)
    detached = [p.detach() for p in params]
    x_leaf = x.detach().requires_grad_()
    compiled = torch.compile(composite_in_opmath, fullgraph=True, dynamic=False)

    def ours_fwd_bwd():
        y = torch.ops.sqish.sqish(x_leaf, *params)
        torch.autograd.grad(y, [x_leaf, *params], g)

    def compiled_fwd_bwd():
        y = compiled(x_leaf, *params)
        torch.autograd.grad(y, [x_leaf, *params], g)

    size = x.element_size() * NUMEL
    return {
        "copy": (median_ms(lambda: copy_dst.copy_(x)), 2 * size),
        "forward": (median_ms(lambda: torch.ops.sqish.sqish(x, *detached)), 2 * size),
        "silu": (median_ms(lambda: F.silu(x)), 2 * size),
        "backward": (median_ms(lambda: torch.ops.sqish.sqish_backward(g, x, *detached, True)), 3 * size),
        "silu_backward": (median_ms(lambda: torch.ops.aten.silu_backward(g, x)), 3 * size),
        "fwd+bwd": (median_ms(ours_fwd_bwd), None),
        "compiled fwd+bwd": (median_ms(compiled_fwd_bwd), None),
    }


# The CPU benchmark's per-channel CNN shapes (bench_cpu.py), batch scaled up 8x for the GPU.
CHANNEL_SHAPES = [(256, 64, 56, 56), (64, 256, 14, 14)]


def measure_per_channel(dtype):
    """Per-channel learnable α, β, γ at CNN shapes, NCHW and channels_last: forward
    and forward+backward, as ratios to F.silu and F.prelu."""
    rows = []
    for shape in CHANNEL_SHAPES:
        for layout, memory_format in (("NCHW", torch.contiguous_format), ("channels_last", torch.channels_last)):
            x = torch.randn(shape, device="cuda", dtype=dtype).contiguous(memory_format=memory_format)
            g = torch.randn_like(x)
            params = make_params(shape[1], (True,) * 3, requires_grad=True)
            prelu_weight = torch.full((shape[1],), 0.25, device="cuda", dtype=dtype, requires_grad=True)
            x_leaf = x.detach().requires_grad_()

            def fwd_bwd(fn, *args):
                return lambda: torch.autograd.grad(fn(x_leaf, *args), [x_leaf, *args], g)

            ms = {
                "forward": median_ms(lambda: torch.ops.sqish.sqish(x, *[p.detach() for p in params])),
                "silu": median_ms(lambda: F.silu(x)),
                "prelu": median_ms(lambda: F.prelu(x, prelu_weight.detach())),
                "fwd+bwd": median_ms(fwd_bwd(torch.ops.sqish.sqish, *params)),
                "silu fwd+bwd": median_ms(fwd_bwd(F.silu)),
                "prelu fwd+bwd": median_ms(fwd_bwd(F.prelu, prelu_weight)),
            }
            rows.append({"shape": "×".join(map(str, shape)), "layout": layout, "ms": ms})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="also write every figure and target to this file")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_gpu.py needs a CUDA device")
    check_kernels()
    results = {name: measure(dtype) for name, dtype in DTYPES.items()}
    per_channel = {name: measure_per_channel(dtype) for name, dtype in DTYPES.items()}

    lines = [f"Sqish on {torch.cuda.get_device_name()}, torch {torch.__version__}, 2^28 elements, "
             f"median of {REPEATS} (CUDA events)",
             f"{'dtype':9} {'op':17} {'ms':>8} {'GB/s':>7}"]
    for name, rows in results.items():
        for op, (ms, nbytes) in rows.items():
            bandwidth = f"{nbytes / ms / 1e6:7.0f}" if nbytes else f"{'':7}"
            lines.append(f"{name:9} {op:17} {ms:8.3f} {bandwidth}")
    lines.append("")
    lines.append(f"{'dtype':9} {'target':44} {'measured':>9}  result")
    misses = 0
    record = {"device": torch.cuda.get_device_name(), "numel": NUMEL, "repeats": REPEATS,
              "ms": {name: {op: ms for op, (ms, _) in rows.items()} for name, rows in results.items()},
              "targets": []}
    for name, r in results.items():
        def bandwidth_share(op):
            return (r[op][1] / r[op][0]) / (r["copy"][1] / r["copy"][0])

        targets = [
            ("forward bandwidth >= 85% of copy", bandwidth_share("forward"), 0.85, True),
            ("forward time <= 1.05x F.silu", r["forward"][0] / r["silu"][0], 1.05, False),
            ("backward bandwidth >= 80% of copy", bandwidth_share("backward"), 0.80, True),
            ("backward time <= 1.1x silu_backward", r["backward"][0] / r["silu_backward"][0], 1.10, False),
            ("fwd+bwd time <= 1.0x compiled composite", r["fwd+bwd"][0] / r["compiled fwd+bwd"][0], 1.00, False),
        ]
        for label, value, bound, at_least in targets:
            passed = value >= bound if at_least else value <= bound
            misses += not passed
            shown = f"{value:8.1%}" if at_least else f"{value:8.3f}x"
            lines.append(f"{name:9} {label:44} {shown:>9}  {'PASS' if passed else 'MISS'}")
            record["targets"].append({"dtype": name, "target": label, "measured": value, "bound": bound,
                                      "passed": passed})
    lines.append(f"targets missed: {misses}")
    lines.append("")
    lines.append("Per-channel learnable parameters: sqish_ext time / reference time")
    lines.append(f"{'dtype':9} {'shape':14} {'layout':14} {'fwd/silu':>9} {'fwd/prelu':>9} {'f+b/silu':>9} {'f+b/prelu':>9}")
    for name, rows in per_channel.items():
        for row in rows:
            ms = row["ms"]
            lines.append(f"{name:9} {row['shape']:14} {row['layout']:14} {ms['forward'] / ms['silu']:9.2f} "
                         f"{ms['forward'] / ms['prelu']:9.2f} {ms['fwd+bwd'] / ms['silu fwd+bwd']:9.2f} "
                         f"{ms['fwd+bwd'] / ms['prelu fwd+bwd']:9.2f}")
    record["per_channel"] = per_channel
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
