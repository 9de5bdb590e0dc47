"""Shared fixtures: devices, the high-precision reference table, a float64 oracle,
the deployment tests' models and the CMake build of the C++ examples."""
import csv
from pathlib import Path

import pytest
import torch

import sqish_ext  # noqa: F401  (loads the ops)
from sqish_ext.reference import along_channels, sqish_partials, sqish_reference
import cpp_examples
from deploy_models import CHANNELS, CONFIG_IDS, CONFIGS, make_model, ramp

# f and its four partials at 708 points, written by scripts/make_reference_table.py:
# mpmath at 80 digits from the closed forms of docs/math.md, cross-checked against
# mpmath's numerical derivatives (test_reference.py checks the table is what it writes).
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


def rounding_bound(dtype, fn, x64, params64):
    """How far the kernels' value of fn (the reference's f or a partial) may be from
    float64 at x64 (values exact in dtype) and params64, per element.

    The kernels compute in float32 or wider. One relative rounding ε of x or of a
    derived coefficient (α, k = 2γ(1−α), c = −ln β) moves v = fn by about ε times
    |x ∂v/∂x| + |α ∂v/∂α| + |γ ∂v/∂γ| + (1 + |ln β|)·|β ∂v/∂β| (float64 autograd,
    parameters expanded per element); 8 such roundings cover the handful of
    operations (16 for float64, whose reference rounds as much). The half types then
    round the result once: ε of dtype relative to the value (half an ulp, and the
    float32 error may cross a rounding boundary). The floors are for values below
    the normal range, where ulps are absolute."""
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    x = x64.clone().requires_grad_()
    expanded = [along_channels(p, x64).expand_as(x64).clone().requires_grad_() for p in params64]
    value = fn(x, *expanded)
    grads = torch.autograd.grad(value.sum(), [x, *expanded], allow_unused=True, materialize_grads=True)
    a, b, g = (p.detach() for p in expanded)
    # β = 0 is exact and so is its c = +∞: no rounding to propagate (the formula's 0·∞ there is NaN).
    beta_term = torch.where(b > 0, (1 + b.log().abs()) * (b * grads[2]).abs(), 0)
    sensitivity = (x64 * grads[0]).abs() + (a * grads[1]).abs() + (g * grads[3]).abs() + beta_term
    value = value.detach()
    # Against float64, the reference's own roundings count too.
    roundings = 16 if dtype == torch.float64 else 8
    bound = roundings * torch.finfo(compute).eps * (value.abs() + sensitivity)
    if dtype != compute:
        bound = bound + torch.finfo(dtype).eps * value.abs()
    # Where the gate s = σ(kx + c) falls below the compute dtype's normal range it is
    # that dtype's 0 or a subnormal: off by up to its smallest normal, which moves v by
    # at most (1 + |x|)·(1 + |kx|) times as much.
    k = 2 * g * (1 - a)
    gate_floor = torch.finfo(compute).tiny * (1 + x64.abs()) * (1 + (k * x64).abs())
    return bound + gate_floor + torch.finfo(dtype).tiny


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
