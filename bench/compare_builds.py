"""Compares two builds of sqish_ext on the CPU benchmark in one run.

bench_cpu.py runs alternately with each build first on PYTHONPATH (a checkout whose
sqish_ext was built in place, e.g. with `python setup.py build_ext --inplace`), and
each row's ratio to F.silu, measured in the same process, is compared: a noisy machine
shifts both builds' times alike, and the ratio cancels what it shifts.

    python bench/compare_builds.py BASELINE_CHECKOUT CANDIDATE_CHECKOUT [--repeats 2] [bench_cpu args]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent / "bench_cpu.py"


def run_bench(checkout, bench_args, out):
    env = dict(os.environ, PYTHONPATH=str(Path(checkout).resolve()))
    subprocess.run([sys.executable, str(BENCH), *bench_args, "--json", str(out)], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return json.loads(Path(out).read_text())


def ratios(record):
    """Row name -> sqish_ext time / F.silu time."""
    rows = {f"{r['dtype']} {r['n']} {r['mode']}": r["seconds"] for r in record["rows"]}
    rows.update({f"{r['dtype']} {r['shape']} {r['layout']} {r['mode']}": r["seconds"] for r in record["per_channel"]})
    result = {name: t["sqish_ext"] / t["F.silu"] for name, t in rows.items()}
    for mode, calls in record["per_call_seconds"].items():
        for name, t in calls.items():
            if name != "F.silu":
                result[f"8 elements, {mode}, {name}"] = t / calls["F.silu"]
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("baseline")
    parser.add_argument("candidate")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each build, alternating")
    args, bench_args = parser.parse_known_args()
    results = {"baseline": [], "candidate": []}
    with tempfile.TemporaryDirectory() as folder:
        for i in range(args.repeats):
            for name in ("baseline", "candidate"):
                record = run_bench(getattr(args, name), bench_args, Path(folder) / f"{name}{i}.json")
                results[name].append(ratios(record))
    print(f"ext / F.silu, median of {args.repeats} alternating runs of each build "
          f"(baseline {args.baseline}, candidate {args.candidate})")
    print()
    print("| row | baseline | candidate | change |")
    print("|---|---|---|---|")
    for row in results["candidate"][0]:
        base = statistics.median(r[row] for r in results["baseline"])
        cand = statistics.median(r[row] for r in results["candidate"])
        print(f"| {row} | {base:.2f} | {cand:.2f} | {100 * (cand / base - 1):+.0f} % |")


if __name__ == "__main__":
    main()
