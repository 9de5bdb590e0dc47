"""The C++ example programs (examples/), built with CMakeLists.txt against the installed
torch, and what they print: shared by the TorchScript and AOTInductor tests."""
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
# The configure step's own message when torch is a CUDA build and no toolkit is found.
NO_TOOLKIT = "its CMake package needs a CUDA"


def build(build_dir: Path) -> Path:
    """Configures and builds libsqish_ops and the examples into build_dir (CPU kernels only:
    about a minute on two cores); skips where no build is possible."""
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed")
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        pytest.skip("no C++ compiler (c++, or $CXX) is installed")
    configure = ["cmake", "-S", str(ROOT), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
                 f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}", "-DSQISH_CPU_ONLY=ON"]
    for command in (configure, ["cmake", "--build", str(build_dir), "-j2"]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
        if command is configure and result.returncode != 0 and NO_TOOLKIT in result.stderr:
            pytest.skip(f"torch is built with CUDA {torch.version.cuda} and no CUDA toolkit is found: "
                        "set CUDA_HOME")
        assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return build_dir


def run(program: Path, model_path: Path, shape) -> dict:
    """What the program gives for this model on the ramp of this shape: its shape:, sum:
    and first: lines, by name, and under "values" every output value it wrote."""
    model_path = Path(model_path)
    values_path = model_path.with_name(model_path.name + f".{program.name}.f32")
    result = subprocess.run([str(program), str(model_path), *map(str, shape), str(values_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    printed = dict(line.split(":", 1) for line in result.stdout.splitlines())
    printed["values"] = torch.from_numpy(np.fromfile(values_path, dtype=np.float32))
    return printed


def assert_printed(printed: dict, expected: torch.Tensor) -> None:
    """The program's output is expected (float32) to float32 rounding, every value: the
    C++ and Python processes run the same kernels on the same ramp, but their
    convolutions may pick other algorithms (a few float32 ulps); %.9g prints every
    float32 digit, and the sums are accumulated in another order."""
    assert [int(s) for s in printed["shape"].split()] == list(expected.shape)
    torch.testing.assert_close(printed["values"], expected.flatten(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(float(printed["sum"]), expected.sum().item(), rtol=1e-6, atol=1e-5)
    first = torch.tensor([float(v) for v in printed["first"].split()])
    torch.testing.assert_close(first, expected.flatten()[:8], rtol=1e-6, atol=1e-7)
