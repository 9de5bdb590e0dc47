#!/usr/bin/env bash
# Builds the sqish-ext wheel against the installed torch, installs it into a fresh venv
# and runs a smoke test there, away from the checkout.
#
#   scripts/build_wheel.sh [OUT_DIR]        (default: dist/)
#
# Environment: PYTHON (default: python3), the interpreter whose torch the wheel is built
# against; SQISH_CPU_ONLY=1 for a CPU-only wheel; CUDA_HOME and TORCH_CUDA_ARCH_LIST as
# for setup.py. A CUDA wheel gets kernels for setup.py's RELEASE_CUDA_ARCHS unless
# TORCH_CUDA_ARCH_LIST says otherwise; the script checks the built library holds them.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
OUT=$(mkdir -p "${1:-$ROOT/dist}" && cd "${1:-$ROOT/dist}" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

cd "$ROOT"
echo "== building the wheel ($("$PYTHON" -c 'import torch; print("torch", torch.__version__)'))"
start=$(date +%s)
# A fresh build folder: setuptools would otherwise reuse objects compiled with other flags.
rm -rf build
"$PYTHON" -m pip wheel --no-build-isolation --no-deps --wheel-dir "$WORK/wheel" .
echo "== built in $(( $(date +%s) - start )) s"
wheel=$(ls "$WORK"/wheel/sqish_ext-*.whl)

echo "== checking the wheel's metadata and CUDA kernels"
"$PYTHON" "$ROOT/scripts/check_wheel.py" "$wheel"

echo "== installing into a fresh venv"
"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install --quiet "$wheel"

echo "== smoke test"
cd "$WORK"  # not the checkout, so that the installed package is the one imported
"$WORK/venv/bin/python" - <<'PY'
import torch
import sqish_ext
from sqish_ext import _build_info

print("sqish_ext from", sqish_ext.__file__)
print("built against torch", _build_info.TORCH_VERSION, "CUDA", _build_info.CUDA_VERSION,
      "archs", _build_info.CUDA_ARCH_LIST)
devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and _build_info.CUDA_VERSION else [])
for device in devices:
    act = sqish_ext.Sqish(learnable=True, num_parameters=3).to(device)
    x = torch.linspace(-4, 4, 24, device=device).reshape(2, 3, 4).requires_grad_()
    y = act(x)
    y.sum().backward()
    assert torch.isfinite(y).all() and x.grad is not None and act.alpha.grad is not None
    silu = sqish_ext.sqish(x.detach(), 0.0, 1.0, 0.5)
    torch.testing.assert_close(silu, torch.nn.functional.silu(x.detach()))
    print(f"{device}: forward and backward ok")
PY
cp "$wheel" "$OUT/"
echo "== wheel: $OUT/$(basename "$wheel")"
