"""Values and all four partial derivatives against the 80-digit mpmath table."""
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import load_reference, partials
from sqish_ext.reference import sqish_partials, sqish_reference

QUANTITIES = ["f", "df_dx", "df_dalpha", "df_dbeta", "df_dgamma"]
SETTINGS = sorted(load_reference())


def reference_columns(rows, quantity):
    return torch.tensor([r[quantity] for r in rows], dtype=torch.float64)


def rounding_sensitivity(x, alpha, beta, gamma, device):
    """For each quantity v: |x ∂v/∂x| + |α ∂v/∂α| + |γ ∂v/∂γ| + (1 + |ln β|)·|∂v/∂ln β|,
    from float64 central differences. One relative rounding ε in x or in a derived
    coefficient (k = 2γ(1−α), c = −ln β, α) moves v by about ε times this."""
    delta = 1e-6

    def moved(sign, which):
        xs = x * (1 + sign * delta) if which == "x" else x
        a = alpha * (1 + sign * delta) if which == "alpha" else alpha
        b = beta * math.exp(sign * delta) if which == "log_beta" else beta
        g = gamma * (1 + sign * delta) if which == "gamma" else gamma
        return partials(xs.to(device), a, b, g)

    total = {q: 0 for q in QUANTITIES}
    for which in ("x", "alpha", "log_beta", "gamma"):
        hi, lo = moved(1, which), moved(-1, which)
        weight = 1 + abs(math.log(beta)) if which == "log_beta" else 1
        for q in QUANTITIES:
            total[q] = total[q] + weight * (hi[q] - lo[q]).abs().cpu() / (2 * delta)
    return total


@pytest.mark.parametrize("setting", SETTINGS, ids=str)
@pytest.mark.parametrize("quantity", QUANTITIES)
def test_float64_matches_reference_within_1e_10_relative(device, setting, quantity):
    rows = load_reference()[setting]
    x = reference_columns(rows, "x").to(device)
    got = partials(x, *setting)[quantity].cpu()
    want = reference_columns(rows, quantity)
    assert ((got - want).abs() <= 1e-10 * want.abs()).all(), (got - want).abs().max()


@pytest.mark.parametrize("setting", SETTINGS, ids=str)
@pytest.mark.parametrize("quantity", QUANTITIES)
def test_float32_error_is_a_few_roundings_of_its_inputs(device, setting, quantity):
    # x is rounded to float32 first and the float64 op (checked above against the
    # table) evaluated at that x, so the only error left is float32 arithmetic: a
    # rounding ε = 2^-24 of each value and coefficient, propagated to first order,
    # times 8 for the handful of operations in between.
    rows = load_reference()[setting]
    x32 = reference_columns(rows, "x").float()
    want = partials(x32.double().to(device), *setting)[quantity].cpu()
    got = partials(x32.to(device), *setting)[quantity].cpu().double()
    sensitivity = rounding_sensitivity(x32.double(), *setting, device)[quantity]
    tolerance = 8 * 2.0**-24 * (want.abs() + sensitivity) + 1e-37  # floor: float32's subnormal range
    assert ((got - want).abs() <= tolerance).all(), ((got - want).abs() / tolerance).max()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("setting", SETTINGS, ids=str)
def test_half_precision_is_float32_math_rounded_once(device, dtype, setting):
    # Half types are computed in float32 and rounded once to the dtype: at most
    # half an ulp (ε/2 relative) of the output, plus float32's own error, which is
    # far smaller; the floor is the dtype's smallest subnormal.
    rows = load_reference()[setting]
    x = reference_columns(rows, "x").to(dtype)
    x = x[x.isfinite()]
    info = torch.finfo(dtype)
    got = partials(x.to(device), *setting)
    want = partials(x.double().to(device), *setting)
    for quantity in ("f", "df_dx"):
        g, w = got[quantity].cpu().double(), want[quantity].cpu()
        w_rounded = w.to(dtype).double()
        finite = w_rounded.isfinite()
        tolerance = info.eps * w.abs() + info.smallest_normal * info.eps
        assert ((g - w).abs()[finite] <= tolerance[finite]).all(), quantity


@pytest.mark.parametrize("setting", SETTINGS, ids=str)
def test_torch_ops_reference_matches_the_table(setting):
    # sqish_ext.reference is the tests' float64 oracle and the double backward's
    # formula, so it is held to the same 1e-10 relative as the float64 kernels.
    rows = load_reference()[setting]
    x = reference_columns(rows, "x")
    got = {"f": sqish_reference(x, *setting), **sqish_partials(x, *setting)._asdict()}
    for quantity in QUANTITIES:
        want = reference_columns(rows, quantity)
        error = (got[quantity] - want).abs()
        assert (error <= 1e-10 * want.abs()).all(), (quantity, error.max())


def test_table_is_what_its_script_computes():
    # The table is data; this keeps it reproducible from scripts/make_reference_table.py.
    pytest.importorskip("mpmath", reason="needs mpmath (pip install 'sqish-ext[test]')")
    script = Path(__file__).resolve().parent.parent / "scripts" / "make_reference_table.py"
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
