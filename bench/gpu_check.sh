#!/usr/bin/env bash
# The GPU check, on a machine with a CUDA device and its own python with torch, pytest
# and hypothesis (no network and no compiler needed): installs a built sqish-ext wheel
# (the one CI builds: scripts/build_wheel.sh) with --no-deps, runs every CUDA test of
# tests/, a short subset of them under compute-sanitizer (memcheck, racecheck,
# synccheck), the CPU accuracy tests on this machine's CPU (often AVX-512, which CI
# machines may lack), then bench/bench_gpu.py. Each step has a timeout. Writes into OUT_DIR:
#   gpu_check.log   everything printed
#   junit.xml       the CUDA tests, one entry each
#   cpu_junit.xml   the CPU accuracy tests
#   bench.json      the benchmark's figures and targets
#   summary.json    device, torch, CUDA, tests passed/failed/skipped, every figure and target
# Exits non-zero if the install, a test or a check fails (not for a missed target).
#
#   bash bench/gpu_check.sh dist/sqish_ext-*-abi3-*.whl OUT_DIR      (PYTHON=... to choose the python)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WHEEL=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
OUT=$(mkdir -p "$2" && cd "$2" && pwd)
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
exec > >(tee "$OUT/gpu_check.log") 2>&1
status=0

echo "== install $(basename "$WHEEL")"
timeout 180 "$PYTHON" -m pip install --quiet --no-deps --no-index --force-reinstall "$WHEEL" || exit 1
cd "$(mktemp -d)"  # not the checkout: the installed wheel is the package imported
timeout 120 "$PYTHON" - <<'PY' || exit 1
import torch, sqish_ext
print(f"sqish_ext from {sqish_ext.__file__}; torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"device {torch.cuda.get_device_name() if torch.cuda.is_available() else None}")
assert torch.cuda.is_available(), "no CUDA device"
assert sqish_ext.CUDA_KERNELS_OFF is None, sqish_ext.CUDA_KERNELS_OFF
PY

echo "== CUDA tests (every test of tests/ whose id names cuda)"
timeout 420 "$PYTHON" -m pytest "$ROOT/tests" -k cuda -q -p no:cacheprovider -rs --junitxml="$OUT/junit.xml" || status=1

# One layout and dtype of each kernel path: under the sanitizers a test runs many times slower.
SANITIZED="test_forward_and_backward_match and float32 and (scalar and 1-D or per-channel and (8x8 or channels_last)) or test_inplace_matches and float32"
SANITIZER=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -n 1)
if [ -n "$SANITIZER" ]; then
  for tool in memcheck racecheck synccheck; do
    echo "== compute-sanitizer --tool $tool on a subset of tests/test_cuda.py"
    timeout 150 "$SANITIZER" --tool "$tool" --error-exitcode 1 --target-processes all \
      "$PYTHON" -m pytest "$ROOT/tests/test_cuda.py" -k "$SANITIZED" -q -p no:cacheprovider -x \
      || { echo "compute-sanitizer $tool: failed (exit $?)"; status=1; }
  done
else
  echo "== compute-sanitizer: not on this machine (not in PATH or /usr/local/cuda*/bin); skipped"
fi

echo "== CPU accuracy tests on this machine's CPU ($("$PYTHON" -c 'import torch; print(torch.backends.cpu.get_cpu_capability())'))"
timeout 300 "$PYTHON" -m pytest "$ROOT/tests/test_reference.py" "$ROOT/tests/test_numerics.py" \
  "$ROOT/tests/test_low_precision.py" "$ROOT/tests/test_properties.py" -k "not cuda" -q -p no:cacheprovider \
  --junitxml="$OUT/cpu_junit.xml" || status=1

echo "== opcheck, CPU comparison, benchmark"
timeout 300 "$PYTHON" "$ROOT/bench/bench_gpu.py" --json "$OUT/bench.json" || status=1

timeout 60 "$PYTHON" - "$OUT" <<'PY' || status=1
import json, sys, xml.etree.ElementTree as ET
from pathlib import Path
import torch
out = Path(sys.argv[1])
summary = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "cpu_capability": torch.backends.cpu.get_cpu_capability()}
for key, name in (("tests", "junit.xml"), ("cpu_tests", "cpu_junit.xml")):
    if (out / name).exists():
        suite = ET.parse(out / name).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
        summary[key] = {"passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
                        "failed": counts["failures"] + counts["errors"], "skipped": counts["skipped"]}
if (out / "bench.json").exists():
    summary["benchmark"] = json.loads((out / "bench.json").read_text())
(out / "summary.json").write_text(json.dumps(summary, indent=1))
print("summary:", json.dumps({k: v for k, v in summary.items() if k != "benchmark"}))
PY
exit $status
