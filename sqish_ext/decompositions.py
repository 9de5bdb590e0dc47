"""Sqish in torch's own ops, for graphs that must not hold sqish::sqish.

sqish_decomposition is what an ONNX export records in place of the op (sqish_ext.sqish
and Sqish call it under torch.onnx.export), so the exporter needs no translation and the
model holds standard ONNX operators only. DECOMPOSITIONS maps both overloads of the op
to it, for ExportedProgram.run_decompositions on a graph that already holds the op.

It is not registered in torch._decomp's global table, from which the ONNX exporter would
take it: Inductor reads that table too and, where the CI environment variable is set,
refuses to fall back to the kernels of an op listed there (tests/test_onnx.py).

It is the reference formula (sqish_ext.reference) evaluated the way the kernels do:
bfloat16 and float16 in float32, rounded once; f(±∞) its limit, not the reference's NaN.
"""
import math

import torch

from sqish_ext.reference import Parameter, sqish_reference


def sqish_decomposition(x: torch.Tensor, alpha: Parameter, beta: Parameter, gamma: Parameter) -> torch.Tensor:
    compute = torch.promote_types(x.dtype, torch.float32)
    # The parameters are rounded to the compute dtype before the reference derives its
    # constants (the kernels derive them in float64): a difference of a few ulps. Numbers
    # become tensors by a fill, which run_decompositions can retrace (torch.tensor cannot),
    # and x.new_full rather than torch.full(device=x.device). One value is given x's rank
    # of size-1 dims: torch 2.10's ONNX type promotion fails on a 0-dim tensor times a number.
    one_value = [1] * x.dim()

    def in_compute(p):
        if not isinstance(p, torch.Tensor):
            return x.new_full(one_value, p, dtype=compute)
        return p.to(compute).reshape(one_value) if p.dim() == 0 else p.to(compute)

    params = [in_compute(p) for p in (alpha, beta, gamma)]
    # At x = ±∞ the reference's terms are ∞·0 = NaN; the kernels return f's limit there,
    # ±∞, or 0 where f vanishes (α = 0 on the side where the gate closes). f at a huge
    # finite x has that limit's sign and is 0 where the limit is, so ±∞ is evaluated at
    # ±(float32's largest value) and scaled back to ±∞. That value serves float64 too
    # (it saturates the gate there as well): the exporter writes scalar constants in
    # float32, where float64's would overflow to ∞. Finite x keep their own value.
    largest = torch.finfo(torch.float32).max
    xc = x.to(compute)
    infinite = xc.abs() == math.inf  # not isinf: the ONNX exporter casts float64 to float32 for it
    y = sqish_reference(torch.where(infinite, xc.sign() * largest, xc), *params)
    y = torch.where(infinite & (y != 0), y * math.inf, y)
    return y.to(x.dtype)


DECOMPOSITIONS = {torch.ops.sqish.sqish.default: sqish_decomposition,
                  torch.ops.sqish.sqish.float: sqish_decomposition}
