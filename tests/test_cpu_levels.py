"""Every x86-64 level of the CPU kernels computes the same function: the accuracy
specifications (tests/test_reference.py, tests/test_numerics.py) pass with the kernels
of each lower level, chosen through ATEN_CPU_CAPABILITY in a fresh process (the level
is picked once per process). The default run covers the machine's own level."""
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86-64 levels only")
@pytest.mark.parametrize("level", ["default", "avx2"])
def test_kernels_of_a_lower_level_meet_the_accuracy_specifications(level, tmp_path):
    env = dict(os.environ, ATEN_CPU_CAPABILITY=level)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "not cuda",
         str(TESTS / "test_reference.py"), str(TESTS / "test_numerics.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
