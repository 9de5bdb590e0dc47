#!/usr/bin/env bash
# Installs one built wheel, unchanged, into a fresh virtual environment per torch release
# and runs the whole test suite there, from outside the checkout so that the installed
# package is the one imported. This is what proves that one stable-ABI wheel serves
# every torch from its target on, and that a torch without CUDA, or with another CUDA
# major, still gets the CPU kernels.
#
#   scripts/test_wheel.sh WHEEL [TORCH_REQUIREMENT ...]
#
# Default releases: the target (2.10.0, a CUDA 12.8 build: the CUDA kernels must turn
# themselves off), 2.11.0 (CUDA 13.0, the GPU machine's), 2.13.0+cpu (no CUDA at all;
# from /opt/wheels where that folder holds it), 2.14.1 and 2.15.0.
# Environment: PYTHON (default: python3) makes the venvs. uv installs them (a CUDA
# build of torch is several GB; uv unpacks it in seconds where pip takes minutes).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
WHEEL=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
shift
RELEASES=("$@")
[ ${#RELEASES[@]} -gt 0 ] || RELEASES=(torch==2.10.0 torch==2.11.0 torch==2.13.0+cpu torch==2.14.1 torch==2.15.0)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

"$PYTHON" -m venv "$WORK/tools"
"$WORK/tools/bin/python" -m pip install --quiet uv
UV="$WORK/tools/bin/uv"
FIND_LINKS=()
[ -d /opt/wheels ] && FIND_LINKS=(--find-links /opt/wheels)

summary=()
for release in "${RELEASES[@]}"; do
  start=$(date +%s)
  venv="$WORK/venv"
  rm -rf "$venv"
  echo "== $release: installing"
  "$UV" venv --quiet --python "$PYTHON" "$venv"
  # setuptools: torch.compile (Inductor) imports it, and uv venvs start without it.
  "$UV" pip install --quiet --python "$venv/bin/python" "${FIND_LINKS[@]}" "$release" "$WHEEL[test]" setuptools
  mkdir -p "$WORK/run"
  cd "$WORK/run"  # not the checkout: the installed wheel is the package imported
  "$venv/bin/python" -c "import sqish_ext, torch; print('torch', torch.__version__, '| CUDA', torch.version.cuda, '| sqish_ext from', sqish_ext.__file__, '| CUDA kernels:', sqish_ext.CUDA_KERNELS_OFF or 'on')"
  echo "== $release: tests"
  "$venv/bin/python" -m pytest "$ROOT/tests" -q -p no:cacheprovider | tee "$WORK/log"
  cd "$ROOT"
  summary+=("$release: $(tail -n 1 "$WORK/log" | tr -d '=') ($(( $(date +%s) - start )) s)")
done

echo "== one wheel, every torch: $(basename "$WHEEL")"
printf '%s\n' "${summary[@]}"
