#!/usr/bin/env bash
# Builds the CPU kernels with AddressSanitizer and UndefinedBehaviorSanitizer, in a
# copy of the checkout, and runs the CPU tests against that build with the baseline
# kernels and the machine's best level. Any report aborts the run, so exit 0 means none.
#
#   scripts/sanitize.sh [PYTEST_ARGS ...]
#
# Environment: PYTHON (default: .venv/bin/python, with the test requirements).
# Python itself is not instrumented: libasan is preloaded, and leak detection is off
# (the interpreter keeps its objects alive to the end by design).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
[[ $PYTHON == */* && $PYTHON != /* ]] && PYTHON=$PWD/$PYTHON  # the script changes folder
CXX=${CXX:-c++}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# The tracked files only: no build folder or compiled module of the checkout.
git -C "$ROOT" ls-files -z | (cd "$ROOT" && xargs -0 cp --parents -t "$WORK")
cd "$WORK"
# -g1: line tables for the reports; full debug info makes the kernels take many times longer to compile.
SANITIZE="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g1"
echo "== building the CPU kernels with $SANITIZE"
SQISH_CPU_ONLY=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" CFLAGS="$SANITIZE" LDFLAGS="-fsanitize=address,undefined" \
  "$PYTHON" setup.py --quiet build_ext --inplace

export LD_PRELOAD="$("$CXX" -print-file-name=libasan.so) $("$CXX" -print-file-name=libubsan.so)"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export PYTHONPATH="$WORK"
# The CPU tests of the kernels and the Python layer; compiling (Inductor), the C++
# programs, the model libraries and the experiment exercise no other kernel code.
TESTS=(tests/test_numerics.py tests/test_reference.py tests/test_properties.py tests/test_layouts.py
       tests/test_autograd.py tests/test_errors.py tests/test_inplace.py tests/test_module.py
       tests/test_per_call.py tests/test_concurrency.py)
"$PYTHON" -c "import sqish_ext; assert sqish_ext.__file__.startswith('$WORK'), sqish_ext.__file__"
# The baseline kernels and the best this CPU runs (ATEN_CPU_CAPABILITY only lowers the level).
best=$("$PYTHON" -c "import torch; print(torch.backends.cpu.get_cpu_capability().lower())")
levels=(default)
[ "$best" != default ] && levels+=("$best")
for level in "${levels[@]}"; do
  echo "== tests under ATEN_CPU_CAPABILITY=$level"
  ATEN_CPU_CAPABILITY=$level "$PYTHON" -m pytest -q -p no:cacheprovider -k "not compile" "${TESTS[@]}" "$@"
done
echo "== sanitizers: no report"
