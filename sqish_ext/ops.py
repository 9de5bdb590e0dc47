"""Autograd and fake-tensor rules for the compiled ops, and the functional API."""
import numbers
from typing import Union

import torch

from sqish_ext import _errors
from sqish_ext.decompositions import sqish_decomposition
from sqish_ext.reference import sqish_partials

DEFAULT_ALPHA = 0.01
DEFAULT_BETA = 1.0
DEFAULT_GAMMA = 1.0

# The overloads, looked up once: calling a packet resolves the overload on every call.
_FORWARD, _FORWARD_FLOAT = torch.ops.sqish.sqish.default, torch.ops.sqish.sqish.float
_INPLACE, _INPLACE_FLOAT = torch.ops.sqish.sqish_.default, torch.ops.sqish.sqish_.float
_BACKWARD, _BACKWARD_FLOAT = torch.ops.sqish.sqish_backward.default, torch.ops.sqish.sqish_backward.float
_BELOW_AUTOGRAD = torch._C._AutoDispatchBelowAutograd
_AFTER_AUTOGRAD = torch._C._after_autograd_keyset


# ---- autograd -------------------------------------------------------------------
#
# The rules run on every call that records a graph, so they do only what backward
# needs: the tensor form saves x and the parameters, the float form x alone (its
# parameters are constants), and neither saves the output.


def _call_below_autograd_unless_recording(op, *args):
    """op(*args), skipping its autograd kernel when grad mode is off (as in a backward
    without create_graph): that kernel would only redispatch to the device's."""
    if torch.is_grad_enabled():
        return op(*args)
    with _BELOW_AUTOGRAD():
        return op(*args)


def _setup_context(ctx, inputs, output):
    x, alpha, beta, gamma = inputs
    ctx.save_for_backward(x, alpha, beta, gamma)


def _backward(ctx, grad_output):
    x, alpha, beta, gamma = ctx.saved_tensors
    needs = ctx.needs_input_grad
    grad_x, grad_alpha, grad_beta, grad_gamma = _call_below_autograd_unless_recording(
        _BACKWARD, grad_output, x, alpha, beta, gamma, needs[1] or needs[2] or needs[3]
    )
    return (
        grad_x if needs[0] else None,
        grad_alpha if needs[1] else None,
        grad_beta if needs[2] else None,
        grad_gamma if needs[3] else None,
    )


def _setup_float_context(ctx, inputs, output):
    x, *ctx.parameter_values = inputs
    ctx.save_for_backward(x)


def _float_backward(ctx, grad_output):
    (x,) = ctx.saved_tensors
    grad_x = _call_below_autograd_unless_recording(_BACKWARD_FLOAT, grad_output, x, *ctx.parameter_values)
    return grad_x, None, None, None


def _composite_backward(grad_output, x, alpha, beta, gamma):
    """The fused backward written with differentiable torch ops (the reference's
    partials), used only to differentiate the backward itself."""
    compute_dtype = torch.promote_types(x.dtype, torch.float32)
    g, xc = grad_output.to(compute_dtype), x.to(compute_dtype)
    partials = sqish_partials(xc, *(p.to(compute_dtype) for p in (alpha, beta, gamma)))

    def reduce(partial, p):
        dims = [d for d in range(x.dim()) if not (p.dim() == 1 and d == 1)]
        term = g * partial
        return term.sum(dims).to(p.dtype) if dims else term.to(p.dtype)

    return (
        (g * partials.df_dx).to(x.dtype),
        reduce(partials.df_dalpha, alpha),
        reduce(partials.df_dbeta, beta),
        reduce(partials.df_dgamma, gamma),
    )


def _differentiate_backward(saved, output_grads, wanted):
    """Gradients of the backward's outputs at saved = (grad_output, x, α, β, γ),
    weighted by output_grads (None for an output nobody differentiates), with
    respect to saved[i] for i in wanted: a list of (i, gradient)."""
    # Grad mode is on here exactly when the caller asked for a graph of this
    # backward (create_graph=True), e.g. for third derivatives.
    create_graph = torch.is_grad_enabled()
    with torch.enable_grad():
        inputs = [t if t.requires_grad else t.detach().requires_grad_() for t in saved]
        outputs = _composite_backward(*inputs)
        pairs = [(o, g) for o, g in zip(outputs, output_grads) if g is not None]
        grads = torch.autograd.grad(
            [o for o, _ in pairs],
            [inputs[i] for i in wanted],
            [g for _, g in pairs],
            allow_unused=True,
            create_graph=create_graph,
        )
    return [(i, torch.zeros_like(saved[i]) if grad is None else grad) for i, grad in zip(wanted, grads)]


def _setup_backward_context(ctx, inputs, output):
    grad_output, x, alpha, beta, gamma, _ = inputs
    ctx.save_for_backward(grad_output, x, alpha, beta, gamma)


def _double_backward(ctx, *output_grads):
    wanted = [i for i, need in enumerate(ctx.needs_input_grad[:5]) if need]
    result = [None] * 6
    for i, grad in _differentiate_backward(ctx.saved_tensors, output_grads, wanted):
        result[i] = grad
    return tuple(result)


def _setup_float_backward_context(ctx, inputs, output):
    grad_output, x, *ctx.parameter_values = inputs
    ctx.save_for_backward(grad_output, x)


def _float_double_backward(ctx, grad_input_grad):
    grad_output, x = ctx.saved_tensors
    # The tensor form's, at constant parameters (filled on x's device: no host copy).
    params = [torch.full((), v, dtype=torch.float64, device=x.device) for v in ctx.parameter_values]
    wanted = [i for i, need in enumerate(ctx.needs_input_grad[:2]) if need]
    result = [None] * 5
    for i, grad in _differentiate_backward([grad_output, x, *params], [grad_input_grad, None, None, None], wanted):
        result[i] = grad
    return tuple(result)


torch.library.register_autograd("sqish::sqish", _backward, setup_context=_setup_context)
torch.library.register_autograd("sqish::sqish.float", _float_backward, setup_context=_setup_float_context)
torch.library.register_autograd(
    "sqish::sqish_backward", _double_backward, setup_context=_setup_backward_context
)
torch.library.register_autograd(
    "sqish::sqish_backward.float", _float_double_backward, setup_context=_setup_float_backward_context
)


def _eager_function(op, setup_context, backward):
    """An autograd.Function with op's registered rules, for eager calls: it skips the
    dispatcher's round trip into the registered autograd kernel (which calls back
    into Python), the larger part of a small input's per-call cost. Its forward takes
    ctx itself: with a separate setup_context, apply binds the arguments to the
    signature on every call, which costs more than the kernel."""
    def forward(ctx, *args):
        with _BELOW_AUTOGRAD():
            output = op(*args)
        setup_context(ctx, args, output)
        return output

    return type(f"Sqish_{op._overloadname}", (torch.autograd.Function,), {
        "forward": staticmethod(forward),
        "backward": staticmethod(backward),
    })


_SqishFunction = _eager_function(_FORWARD, _setup_context, _backward)
_SqishFloatFunction = _eager_function(_FORWARD_FLOAT, _setup_float_context, _float_backward)


# The in-place op overwrites the input that any backward would need, so it has no
# derivative: under autograd it refuses rather than record a wrong graph. Its
# kernels write through raw pointers, so x's version counter, on which autograd's
# checks of saved tensors rely, is bumped here.
def _inplace(call, x, alpha, beta, gamma):
    if torch.is_grad_enabled() and torch._C._any_requires_grad(x, alpha, beta, gamma):
        raise RuntimeError(
            "sqish_: the in-place Sqish overwrites its input, which the backward needs; x or a parameter "
            "requires grad here. Use sqish (out of place) for training, or call sqish_ under "
            "torch.no_grad() / torch.inference_mode()"
        )
    with _BELOW_AUTOGRAD():
        call(x, alpha, beta, gamma)
    torch.autograd.graph.increment_version(x)
    return x


def _inplace_autograd_kernel(op):
    def kernel(keyset, *args):
        return _inplace(lambda *a: op.redispatch(keyset & _AFTER_AUTOGRAD, *a), *args)

    return kernel


_IMPL = torch.library.Library("sqish", "IMPL")
_IMPL.impl("sqish_", _inplace_autograd_kernel(_INPLACE), "Autograd", with_keyset=True)
_IMPL.impl("sqish_.float", _inplace_autograd_kernel(_INPLACE_FLOAT), "Autograd", with_keyset=True)


def refuse_cuda(reason: str) -> None:
    """Registers CUDA kernels that explain why the compiled ones are off."""
    for name in ("sqish", "sqish.float", "sqish_", "sqish_.float", "sqish_backward", "sqish_backward.float"):
        def refuse(*args, _name=name):
            raise RuntimeError(f"sqish::{_name}: sqish_ext's CUDA kernels are off: {reason}")

        _IMPL.impl(name, refuse, "CUDA")


# ---- fake tensors (torch.compile, torch.export) ------------------------------------


@torch.library.register_fake("sqish::sqish")
@torch.library.register_fake("sqish::sqish.float")
def _sqish_fake(x, alpha, beta, gamma):
    return torch.empty_like(x)


@torch.library.register_fake("sqish::sqish_")
@torch.library.register_fake("sqish::sqish_.float")
def _sqish_inplace_fake(x, alpha, beta, gamma):
    return x


@torch.library.register_fake("sqish::sqish_backward")
def _sqish_backward_fake(grad_output, x, alpha, beta, gamma, compute_param_grads):
    grad_x = torch.empty_like(x)
    if not compute_param_grads:
        return grad_x, None, None, None
    return grad_x, torch.empty_like(alpha), torch.empty_like(beta), torch.empty_like(gamma)


@torch.library.register_fake("sqish::sqish_backward.float")
def _sqish_float_backward_fake(grad_output, x, alpha, beta, gamma):
    return torch.empty_like(x)


# ---- functional API -----------------------------------------------------------------


def parameter_number(name: str, value) -> float:
    """A Python number (not a bool) as a float, else TypeError; beta must be >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"sqish: {name} must be a float or a tensor, got {type(value).__name__}")
    if name == "beta" and value < 0:
        raise ValueError(f"sqish: beta must be >= 0 (beta < 0 puts a pole on the real line), got {value}")
    return float(value)


def _as_tensor(value: Union[float, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """A tensor parameter passes (the op checks it); a number beside tensor ones
    becomes a 0-dim float64 tensor filled on x's device (a fill, not a host copy)."""
    if isinstance(value, torch.Tensor):
        return value
    return torch.full((), value, dtype=torch.float64, device=x.device)


# Each form of the ops: (out of place, in place, eager autograd.Function).
_TENSOR_FORM = (_FORWARD, _INPLACE, _SqishFunction)
_FLOAT_FORM = (_FORWARD_FLOAT, _INPLACE_FLOAT, _SqishFloatFunction)


@torch.jit.unused
def _eager_call(inplace: bool, x: torch.Tensor, alpha: Union[float, torch.Tensor],
                beta: Union[float, torch.Tensor], gamma: Union[float, torch.Tensor]) -> torch.Tensor:
    """The op for these arguments, with the argument checks' own error types: the
    float overload when every parameter is a number, else the tensor one."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"sqish: x must be a tensor, got {type(x).__name__}")
    if type(alpha) is float and type(beta) is float and type(gamma) is float:
        # The common case, checked cheaply: the op itself checks beta's domain.
        form, params = _FLOAT_FORM, (alpha, beta, gamma)
    elif isinstance(alpha, torch.Tensor) or isinstance(beta, torch.Tensor) or isinstance(gamma, torch.Tensor):
        form = _TENSOR_FORM
        params = tuple(v if isinstance(v, torch.Tensor) else _as_tensor(parameter_number(name, v), x)
                       for name, v in (("alpha", alpha), ("beta", beta), ("gamma", gamma)))
    else:
        form = _FLOAT_FORM
        params = (parameter_number("alpha", alpha), parameter_number("beta", beta), parameter_number("gamma", gamma))
    forward, inplace_op, function = form
    try:
        if torch.compiler.is_compiling() or torch.jit.is_tracing():  # a graph records the op as it is
            if torch.onnx.is_in_onnx_export():
                # ONNX has no translation of the op: the graph records its formula in torch's
                # ops instead. Dynamo folds this test to False, so torch.compile keeps the op.
                y = sqish_decomposition(x, *params)
                return x.copy_(y) if inplace else y
            return inplace_op(x, *params) if inplace else forward(x, *params)
        if inplace:
            return _inplace(inplace_op, x, *params)
        if torch.is_grad_enabled() and torch._C._any_requires_grad(x, *params):
            return function.apply(x, *params)
        with _BELOW_AUTOGRAD():  # nothing to record
            return forward(x, *params)
    except RuntimeError as error:
        raise _errors.typed(error) from None


def _scripted_float(value: Union[float, torch.Tensor]) -> float:
    if isinstance(value, float):
        return value
    raise TypeError("sqish: expected a float")


def _scripted_call(inplace: bool, x: torch.Tensor, alpha: Union[float, torch.Tensor],
                   beta: Union[float, torch.Tensor], gamma: Union[float, torch.Tensor]) -> torch.Tensor:
    """_eager_call's choice of overload, as TorchScript compiles it (no try). The
    parameters are refined in helpers: a saved script does not load a union refined
    in a condition and used after it."""
    if _scripted_float_form(alpha, beta, gamma):
        a, b, g = _scripted_float(alpha), _scripted_float(beta), _scripted_float(gamma)
        if inplace:
            return torch.ops.sqish.sqish_(x, a, b, g)
        return torch.ops.sqish.sqish(x, a, b, g)
    ta, tb, tg = _as_tensor(alpha, x), _as_tensor(beta, x), _as_tensor(gamma, x)
    if inplace:
        return torch.ops.sqish.sqish_(x, ta, tb, tg)
    return torch.ops.sqish.sqish(x, ta, tb, tg)


def _scripted_float_form(alpha: Union[float, torch.Tensor], beta: Union[float, torch.Tensor],
                         gamma: Union[float, torch.Tensor]) -> bool:
    return isinstance(alpha, float) and isinstance(beta, float) and isinstance(gamma, float)


def _requires_grad(value: Union[float, torch.Tensor]) -> bool:
    return isinstance(value, torch.Tensor) and value.requires_grad


def _may_overwrite(x: torch.Tensor, alpha: Union[float, torch.Tensor], beta: Union[float, torch.Tensor],
                   gamma: Union[float, torch.Tensor]) -> bool:
    """Whether inplace=True may overwrite x: not when autograd records this call
    (its backward needs x), nor in a compiled graph (which plans its own memory)."""
    if torch.compiler.is_compiling():
        return False
    if not torch.is_grad_enabled():
        return True
    return not (x.requires_grad or _requires_grad(alpha) or _requires_grad(beta) or _requires_grad(gamma))


# The annotations make both functions scriptable (torch.jit.script compiles them
# when a scripted forward calls them).
def sqish(
    x: torch.Tensor,
    alpha: Union[float, torch.Tensor] = DEFAULT_ALPHA,
    beta: Union[float, torch.Tensor] = DEFAULT_BETA,
    gamma: Union[float, torch.Tensor] = DEFAULT_GAMMA,
    inplace: bool = False,
) -> torch.Tensor:
    """Sqish of x. alpha, beta, gamma are numbers (passed to the kernels by value) or
    floating tensors, each 0-dim or of size x.size(1) (one value per channel);
    tensors are differentiable. inplace=True has torch's meaning, "may overwrite x":
    it does when autograd does not record the call, else it computes out of place."""
    if inplace and _may_overwrite(x, alpha, beta, gamma):
        return sqish_(x, alpha, beta, gamma)
    if torch.jit.is_scripting():
        return _scripted_call(False, x, alpha, beta, gamma)
    return _eager_call(False, x, alpha, beta, gamma)


def sqish_(
    x: torch.Tensor,
    alpha: Union[float, torch.Tensor] = DEFAULT_ALPHA,
    beta: Union[float, torch.Tensor] = DEFAULT_BETA,
    gamma: Union[float, torch.Tensor] = DEFAULT_GAMMA,
) -> torch.Tensor:
    """In-place Sqish for inference: overwrites and returns x. Raises when autograd
    would need the overwritten input (use it under torch.no_grad() or inference_mode)."""
    if torch.jit.is_scripting():
        return _scripted_call(True, x, alpha, beta, gamma)
    return _eager_call(True, x, alpha, beta, gamma)
