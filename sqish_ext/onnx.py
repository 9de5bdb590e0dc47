"""ONNX export of models that use Sqish, in standard ONNX operators only.

torch.onnx.export (the torch.export-based exporter, the default) cannot translate a
custom op by itself; this module gives it a translation of sqish::sqish (both overloads) into
Cast, Log, Sigmoid, Mul, Add, Where and Reshape, so that any ONNX runtime runs the
model without a custom-op library:

    import sqish_ext.onnx
    sqish_ext.onnx.export(model, (x,), "model.onnx")

or, calling torch.onnx.export directly:

    torch.onnx.export(model, (x,), "model.onnx",
                      custom_translation_table=sqish_ext.onnx.CUSTOM_TRANSLATION_TABLE)
"""
import torch
from onnxscript import ir
from onnxscript import opset18 as op

import sqish_ext  # noqa: F401  (registers torch.ops.sqish)

# float16/bfloat16 are computed in float32 and rounded once, like the kernels.
_COMPUTE_TYPE = {
    ir.DataType.FLOAT16: ir.DataType.FLOAT,
    ir.DataType.BFLOAT16: ir.DataType.FLOAT,
    ir.DataType.FLOAT: ir.DataType.FLOAT,
    ir.DataType.DOUBLE: ir.DataType.DOUBLE,
}


def _constant(value, like):
    return op.CastLike(op.Constant(value_float=value), like)


def sqish_to_onnx(x, alpha, beta, gamma):
    """sqish::sqish as ONNX: f = x·(α + (1−α)·σ(k·x + c)), k = 2γ(1−α), c = −ln β,
    the form the kernels evaluate (csrc/sqish_math.h)."""
    compute = _COMPUTE_TYPE[x.dtype]
    rank = len(x.shape)

    def along_channels(param):
        # A per-channel (C,) value belongs to dim 1 of x: shape (C, 1, ..., 1) broadcasts so.
        if param.shape is not None and len(param.shape) == 1 and rank > 2:
            param = op.Reshape(param, op.Constant(value_ints=[-1] + [1] * (rank - 2)))
        # The per-parameter constants are derived in float64, then rounded once, as in the kernels.
        return op.Cast(param, to=ir.DataType.DOUBLE)

    a, b, g = (along_channels(p) for p in (alpha, beta, gamma))
    one_minus_a = op.Sub(_constant(1.0, a), a)
    k = op.Mul(op.Mul(_constant(2.0, a), g), one_minus_a)
    c = op.Neg(op.Log(b))
    a, one_minus_a, k, c = (op.Cast(v, to=compute) for v in (a, one_minus_a, k, c))

    xc = op.Cast(x, to=compute)
    s = op.Sigmoid(op.Add(op.Mul(k, xc), c))
    factor = op.Add(a, op.Mul(one_minus_a, s))
    # At x = −∞ with α = 0 the factor underflows to 0 and x·factor would be NaN; its limit is 0.
    zero = _constant(0.0, xc)
    y = op.Where(op.Equal(factor, zero), zero, op.Mul(xc, factor))
    return op.Cast(y, to=x.dtype)


def sqish_float_to_onnx(x, alpha: float, beta: float, gamma: float):
    """sqish::sqish.float as ONNX: the same, with the values as float64 constants."""
    def double(value):
        return op.Constant(value=ir.tensor(value, dtype=ir.DataType.DOUBLE))

    return sqish_to_onnx(x, double(alpha), double(beta), double(gamma))


CUSTOM_TRANSLATION_TABLE = {torch.ops.sqish.sqish.default: sqish_to_onnx,
                            torch.ops.sqish.sqish.float: sqish_float_to_onnx}


def export(model, args=(), f=None, **kwargs):
    """torch.onnx.export with the Sqish translation added to any custom_translation_table
    given; other arguments pass through. Returns the torch.onnx.ONNXProgram."""
    table = {**CUSTOM_TRANSLATION_TABLE, **kwargs.pop("custom_translation_table", {})}
    return torch.onnx.export(model, args, f, custom_translation_table=table, **kwargs)
