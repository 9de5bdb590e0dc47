#!/usr/bin/env bash
# On a GPU machine with nvcc and PyTorch (no network needed): builds the extension
# from source for this GPU, runs the CUDA tests, then bench/bench_gpu.py (opcheck
# on CUDA samples, a CPU comparison, and the benchmark, whose table is printed
# last). Exits non-zero if the build, a test or a check fails, or if the tests
# could not run.
#
#   bash bench/gpu_check.sh             # python3, sm_90 (Hopper)
#   PYTHON=... TORCH_CUDA_ARCH_LIST=8.0 bash bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-$(nproc)}
status=0

echo "== build (TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST)"
start=$SECONDS
build_log=$(mktemp)
if ! "$PYTHON" setup.py build_ext --inplace >"$build_log" 2>&1; then
  tail -n 60 "$build_log"
  echo "BUILD FAILED (full log: $build_log)"
  exit 1
fi
echo "built in $((SECONDS - start)) s"
# setup.py quietly builds CPU-only when it finds no toolkit; that is a failure here.
"$PYTHON" - <<'EOF' || { echo "NO CUDA KERNELS: see $build_log"; exit 1; }
import torch, sqish_ext
from sqish_ext import _build_info
print(f"sqish_ext built for CUDA {_build_info.CUDA_VERSION}, archs {_build_info.CUDA_ARCH_LIST}, "
      f"torch {torch.__version__}")
assert _build_info.CUDA_VERSION is not None
assert torch._C._dispatch_has_kernel_for_dispatch_key("sqish::sqish", "CUDA")
EOF

echo "== CUDA tests"
if "$PYTHON" -c "import pytest" 2>/dev/null; then
  timeout 240 "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_cuda.py -rs || status=1
else
  echo "pytest is not installed for $PYTHON: tests/test_cuda.py NOT RUN."
  echo "(bring a pytest wheel; bench_gpu.py below still runs opcheck and a CPU comparison)"
  status=1
fi

echo "== opcheck, CPU comparison, benchmark"
timeout 200 "$PYTHON" bench/bench_gpu.py || status=1
exit $status
