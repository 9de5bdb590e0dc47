"""The C++ route: CMakeLists.txt builds libsqish_ops and examples/sqish_infer against the
installed torch, and sqish_infer runs a TorchScript model with no Python involved."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from deploy_models import CHANNELS, make_model, ramp

ROOT = Path(__file__).resolve().parent.parent
SHAPE = (2, CHANNELS, 5, 6)

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # TorchScript is deprecated


def cuda_home():
    """The toolkit root the way setup.py finds it (torch's own guess from nvcc on PATH can
    be a wrapper script's folder), or None."""
    for candidate in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if candidate and (Path(candidate) / "bin" / "nvcc").exists():
            return candidate
    return None


@pytest.fixture(scope="module")
def sqish_infer(tmp_path_factory):
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed")
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        pytest.skip("no C++ compiler (c++, or $CXX) is installed")
    env = dict(os.environ)
    if torch.version.cuda is not None:
        # A CUDA build of torch exports CMake targets that need the toolkit, even for CPU code.
        if cuda_home() is None:
            pytest.skip(f"torch is built with CUDA {torch.version.cuda}; its CMake package needs a "
                        "CUDA toolkit: set CUDA_HOME")
        env["CUDA_HOME"] = cuda_home()
    build = tmp_path_factory.mktemp("build")
    configure = ["cmake", "-S", str(ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                 f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}", "-DSQISH_CPU_ONLY=ON"]
    for command in (configure, ["cmake", "--build", str(build), "-j2"]):
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return build / "sqish_infer"


def run(sqish_infer, model_path):
    result = subprocess.run([str(sqish_infer), str(model_path), *map(str, SHAPE)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return dict(line.split(":", 1) for line in result.stdout.splitlines())


@pytest.mark.parametrize("learnable,num_parameters", [(False, 1), (True, CHANNELS)],
                         ids=["fixed-scalar", "learnable-per-channel"])
def test_cpp_program_matches_python_on_scripted_model(tmp_path, sqish_infer, learnable, num_parameters):
    model = make_model(learnable, num_parameters)
    path = tmp_path / "model.pt"
    torch.jit.script(model).save(str(path))
    printed = run(sqish_infer, path)
    with torch.no_grad():
        expected = model(ramp(*SHAPE))
    assert [int(s) for s in printed["shape"].split()] == list(expected.shape)
    torch.testing.assert_close(float(printed["sum"]), expected.sum().item(), rtol=1e-6, atol=1e-5)
    first = torch.tensor([float(v) for v in printed["first"].split()])
    torch.testing.assert_close(first, expected.flatten()[:8], rtol=1e-6, atol=1e-7)


def test_cpp_program_runs_traced_model(tmp_path, sqish_infer):
    model = make_model(True, 1)
    path = tmp_path / "model.pt"
    torch.jit.trace(model, ramp(*SHAPE)).save(str(path))
    with torch.no_grad():
        expected = model(ramp(*SHAPE))
    torch.testing.assert_close(float(run(sqish_infer, path)["sum"]), expected.sum().item(), rtol=1e-6, atol=1e-5)
