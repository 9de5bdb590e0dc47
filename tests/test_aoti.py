"""The AOTInductor route: torch._inductor.aoti_compile_and_package compiles an exported
model into one .pt2 file, which runs in any Python process that imports sqish_ext and in
examples/sqish_aoti, C++ only. Sqish stays a call of the op (through the dispatcher, by
name) in the compiled code."""
import os
import shutil
import subprocess
import sys

import pytest
import torch

import sqish_ext
from cpp_examples import assert_printed, run
from deploy_models import CHANNELS, ramp

H, W = 5, 6
EXPORT_BATCH = 2
# The batch axis is dynamic: the package runs batch sizes other than the one it was exported at.
BATCHES = (1, 5)


class FixedAndLearnable(torch.nn.Module):
    """Both overloads of the op: a fixed scalar Sqish (.float, its values constants of the
    compiled code) and a learnable per-channel one (the tensor overload, its values weights)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = torch.nn.Conv2d(CHANNELS, CHANNELS, 3, padding=1)
        self.fixed = sqish_ext.Sqish(alpha=0.1, beta=0.5, gamma=1.5)
        self.conv2 = torch.nn.Conv2d(CHANNELS, CHANNELS, 1)
        self.learnable = sqish_ext.Sqish(learnable=True, num_parameters=CHANNELS)
        with torch.no_grad():
            self.learnable.alpha.copy_(torch.linspace(0.0, 0.3, CHANNELS))
            self.learnable.gamma.copy_(torch.linspace(0.5, 2.0, CHANNELS))

    def forward(self, x):
        return self.learnable(self.conv2(self.fixed(self.conv1(x))))


@pytest.fixture(scope="module")
def model():
    return FixedAndLearnable().eval()


@pytest.fixture(scope="module")
def package(tmp_path_factory, model):
    """The model as an AOTInductor package, dynamic in batch size. Packaging compiles C++
    (about 45 s on two cores), so it is done once for the module."""
    compiler = os.environ.get("CXX", "g++")
    if shutil.which(compiler) is None:
        pytest.skip(f"AOTInductor compiles C++ with $CXX or g++, and {compiler} is not installed")
    exported = torch.export.export(model, (ramp(EXPORT_BATCH, CHANNELS, H, W),),
                                   dynamic_shapes=({0: torch.export.Dim("batch")},))
    path = tmp_path_factory.mktemp("aoti") / "model.pt2"
    return torch._inductor.aoti_compile_and_package(exported, package_path=str(path))


def eager(model, batch):
    with torch.no_grad():
        return model(ramp(batch, CHANNELS, H, W))


# A fresh interpreter: only `import sqish_ext` registers the ops there, as for a user.
RUN_IN_FRESH_PROCESS = """
import sys
import torch
import torch._inductor.codecache  # torch 2.10's aoti_load_package uses it without importing it
import sqish_ext
package, inputs, outputs = sys.argv[1:]
loaded = torch._inductor.aoti_load_package(package)
with torch.no_grad():
    torch.save([loaded(x) for x in torch.load(inputs)], outputs)
"""


def test_package_runs_in_a_fresh_python_process(tmp_path, package, model):
    inputs = [ramp(batch, CHANNELS, H, W) for batch in BATCHES]
    torch.save(inputs, tmp_path / "inputs.pt")
    result = subprocess.run([sys.executable, "-c", RUN_IN_FRESH_PROCESS, package, str(tmp_path / "inputs.pt"),
                             str(tmp_path / "outputs.pt")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    for batch, output in zip(BATCHES, torch.load(tmp_path / "outputs.pt")):
        # float32 results of the same kernels (conv and Sqish), the surrounding code compiled:
        # float32's default tolerance.
        torch.testing.assert_close(output, eager(model, batch), msg=f"batch {batch}")


def test_cpp_program_runs_package(cpp_build, package, model):
    for batch in BATCHES:
        assert_printed(run(cpp_build / "sqish_aoti", package, (batch, CHANNELS, H, W)), eager(model, batch))


def test_cpp_program_refuses_bad_sizes_with_usage(cpp_build):
    result = subprocess.run([str(cpp_build / "sqish_aoti"), "model.pt2", "2", "3x", "5", "6"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "3x is not a positive integer" in result.stderr and "usage:" in result.stderr
