"""Shared fixtures: devices, the high-precision reference table, a float64 oracle,
the deployment tests' models and the CMake build of the C++ examples."""
import csv
from pathlib import Path

import pytest
import torch

import sqish_ext  # noqa: F401  (loads the ops)
from sqish_ext.reference import sqish_partials, sqish_reference
import cpp_examples
from deploy_models import CHANNELS, CONFIG_IDS, CONFIGS, make_model, ramp

# f and its four partials at 708 points, computed with mpmath at 80 digits from the
# closed forms of docs/math.md and cross-checked against mpmath's numerical derivatives.
REFERENCE_CSV = Path(__file__).resolve().parent / "data" / "sqish_reference.csv"
HAS_CUDA = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device"))]


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


def load_reference():
    """Rows of the mpmath table grouped by (alpha, beta, gamma)."""
    groups = {}
    with REFERENCE_CSV.open() as f:
        for row in csv.DictReader(f):
            values = {k: float(v) for k, v in row.items()}
            groups.setdefault((values["alpha"], values["beta"], values["gamma"]), []).append(values)
    return groups


def oracle(x, alpha, beta, gamma):
    """Sqish and its four partials in float64 from the package's torch-ops reference
    (sqish_ext/reference.py, itself checked against the mpmath table), independent
    of the compiled kernels. Parameters broadcast like the op's (dim 1)."""
    x = x.double()
    params = [torch.as_tensor(p, dtype=torch.float64, device=x.device) for p in (alpha, beta, gamma)]
    return {"f": sqish_reference(x, *params), **sqish_partials(x, *params)._asdict()}


def partials(x, alpha, beta, gamma):
    """f and all four partials per element from the ops: x of shape (1, n) with
    per-channel parameters makes each channel's parameter gradient the partial
    at that one element."""
    n = x.numel()
    xs = x.reshape(1, n)
    params = [torch.full((n,), v, dtype=torch.float64, device=x.device) for v in (alpha, beta, gamma)]
    f = torch.ops.sqish.sqish(xs, *params)
    grads = torch.ops.sqish.sqish_backward(torch.ones_like(xs), xs, *params, True)
    return {
        "f": f.reshape(-1),
        "df_dx": grads[0].reshape(-1),
        "df_dalpha": grads[1],
        "df_dbeta": grads[2],
        "df_dgamma": grads[3],
    }


@pytest.fixture(params=CONFIGS, ids=CONFIG_IDS)
def model(request):
    """A small model using Sqish, in each deployment configuration."""
    return make_model(*request.param)


@pytest.fixture
def example():
    return ramp(2, CHANNELS, 5, 6)


@pytest.fixture(scope="session")
def cpp_build(tmp_path_factory):
    """The CMake build folder of libsqish_ops and the C++ examples, built once per run."""
    return cpp_examples.build(tmp_path_factory.mktemp("cmake_build"))
