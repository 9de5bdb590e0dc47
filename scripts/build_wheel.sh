#!/usr/bin/env bash
# Builds the release wheel (abi3, stable ABI, CUDA kernels for build.json's architectures)
# and checks it: metadata, stable-ABI symbols only, CUDA kernels present (check_wheel.py).
# scripts/test_wheel.sh then runs the test suite on that file under several torch releases.
#
#   scripts/build_wheel.sh [OUT_DIR]        (default: dist/)
#
# Environment: PYTHON (default: python3), an interpreter with torch >= the target and the
# build requirements; SQISH_CPU_ONLY=1 for a CPU-only wheel; CUDA_HOME and
# TORCH_CUDA_ARCH_LIST as for setup.py (default: build.json's cuda_archs).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
OUT=$(mkdir -p "${1:-$ROOT/dist}" && cd "${1:-$ROOT/dist}" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

cd "$ROOT"
echo "== building the wheel ($("$PYTHON" -c 'import torch; print("with torch", torch.__version__)'))"
start=$(date +%s)
# A fresh build folder: setuptools would otherwise reuse objects compiled with other flags.
rm -rf build
MAX_JOBS="${MAX_JOBS:-$(nproc)}" "$PYTHON" -m pip wheel --no-build-isolation --no-deps --wheel-dir "$WORK/wheel" .
echo "== built in $(( $(date +%s) - start )) s"
wheel=$(ls "$WORK"/wheel/sqish_ext-*.whl)

echo "== checking the wheel"
"$PYTHON" "$ROOT/scripts/check_wheel.py" "$wheel"

rm -f "$OUT"/sqish_ext-*.whl
cp "$wheel" "$OUT/"
echo "== wheel: $OUT/$(basename "$wheel")"
