"""The legacy C++ route: examples/sqish_infer runs a TorchScript model with no Python
involved (CMakeLists.txt builds it with libsqish_ops against the installed torch)."""
import os
import shutil
import subprocess

import pytest
import torch

from cpp_examples import ROOT, assert_printed, run
from deploy_models import CHANNELS, make_model, ramp

SHAPE = (2, CHANNELS, 5, 6)

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # TorchScript is deprecated


@pytest.mark.parametrize("learnable,num_parameters", [(False, 1), (True, CHANNELS)],
                         ids=["fixed-scalar", "learnable-per-channel"])
def test_cpp_program_matches_python_on_scripted_model(tmp_path, cpp_build, learnable, num_parameters):
    model = make_model(learnable, num_parameters)
    path = tmp_path / "model.pt"
    torch.jit.script(model).save(str(path))
    with torch.no_grad():
        assert_printed(run(cpp_build / "sqish_infer", path, SHAPE), model(ramp(*SHAPE)))


def test_cpp_program_runs_traced_model(tmp_path, cpp_build):
    model = make_model(True, 1)
    path = tmp_path / "model.pt"
    torch.jit.trace(model, ramp(*SHAPE)).save(str(path))
    with torch.no_grad():
        assert_printed(run(cpp_build / "sqish_infer", path, SHAPE), model(ramp(*SHAPE)))


def test_cmake_stops_at_once_naming_a_cuda_home_that_is_no_toolkit(tmp_path):
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed")
    env = {**os.environ, "CUDA_HOME": str(tmp_path / "no-toolkit")}
    result = subprocess.run(["cmake", "-S", str(ROOT), "-B", str(tmp_path / "build"),
                             f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert f"CUDA_HOME={tmp_path / 'no-toolkit'} is not a CUDA toolkit" in " ".join(result.stderr.split())
