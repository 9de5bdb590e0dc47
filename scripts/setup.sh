#!/usr/bin/env bash
# One-command set-up: a virtual environment in .venv with the pinned torch and the
# project's tools, and sqish_ext built from this checkout (editable).
#
#   SQISH_CPU_ONLY=1        skip the CUDA kernels even when a toolkit is present
#   TORCH_CUDA_ARCH_LIST    CUDA architectures to compile (default: setup.py's release list)
#   PYTHON                  the interpreter for the venv (default: python3)
set -euo pipefail
cd "$(dirname "$0")/.."

"${PYTHON:-python3}" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements.txt
# --no-build-isolation: compile against the torch just installed, not a fresh copy.
MAX_JOBS="${MAX_JOBS:-$(nproc)}" .venv/bin/python -m pip install --quiet --no-build-isolation --no-deps -e .
.venv/bin/python -c "import torch, sqish_ext, sqish_ext._build_info as b; print('sqish_ext ready: torch', torch.__version__, '(built for torch >=', b.TORCH_TARGET_VERSION + ') | CUDA kernels:', b.CUDA_ARCH_LIST if sqish_ext.CUDA_KERNELS_OFF is None else sqish_ext.CUDA_KERNELS_OFF)"
