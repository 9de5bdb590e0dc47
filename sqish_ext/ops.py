"""Autograd and fake-tensor rules for the compiled ops, and the functional API."""
import numbers
from typing import Tuple, Union

import torch

from sqish_ext import _errors

DEFAULT_ALPHA = 0.01
DEFAULT_BETA = 1.0
DEFAULT_GAMMA = 1.0


# ---- autograd -------------------------------------------------------------------


def _setup_context(ctx, inputs, output):
    x, alpha, beta, gamma = inputs
    ctx.save_for_backward(x, alpha, beta, gamma)


def _backward(ctx, grad_output):
    x, alpha, beta, gamma = ctx.saved_tensors
    needs = ctx.needs_input_grad
    grad_x, grad_alpha, grad_beta, grad_gamma = torch.ops.sqish.sqish_backward(
        grad_output, x, alpha, beta, gamma, any(needs[1:])
    )
    return (
        grad_x if needs[0] else None,
        grad_alpha if needs[1] else None,
        grad_beta if needs[2] else None,
        grad_gamma if needs[3] else None,
    )


def _composite_backward(grad_output, x, alpha, beta, gamma):
    """The fused backward written with differentiable torch ops (math.md's
    closed forms), used only to differentiate the backward itself."""
    compute_dtype = torch.promote_types(x.dtype, torch.float32)
    g, xc = grad_output.to(compute_dtype), x.to(compute_dtype)
    shape = [1] * x.dim()
    if x.dim() >= 2:
        shape[1] = -1

    def broadcast(p):
        return p.to(compute_dtype).reshape(shape) if p.dim() == 1 else p.to(compute_dtype)

    a, b, c = broadcast(alpha), broadcast(beta), broadcast(gamma)
    k = 2 * c * (1 - a)
    w = k * xc - torch.log(b)
    s, sc = torch.sigmoid(w), torch.sigmoid(-w)
    q = s * sc
    grad_x = g * (a + (1 - a) * (s + k * xc * q))

    def reduce(term, p):
        dims = [d for d in range(x.dim()) if not (p.dim() == 1 and d == 1)]
        return term.sum(dims).to(p.dtype) if dims else term.to(p.dtype)

    return (
        grad_x.to(x.dtype),
        reduce(g * xc * (sc - k * xc * q), alpha),
        reduce(-g * (1 - a) * xc * q / b, beta),
        reduce(2 * g * (1 - a) ** 2 * xc * xc * q, gamma),
    )


def _setup_backward_context(ctx, inputs, output):
    grad_output, x, alpha, beta, gamma, _ = inputs
    ctx.save_for_backward(grad_output, x, alpha, beta, gamma)


def _double_backward(ctx, *output_grads):
    saved = ctx.saved_tensors
    wanted = [i for i, need in enumerate(ctx.needs_input_grad[:5]) if need]
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
    result = [None] * 6
    for i, grad in zip(wanted, grads):
        result[i] = torch.zeros_like(saved[i]) if grad is None else grad
    return tuple(result)


torch.library.register_autograd("sqish::sqish", _backward, setup_context=_setup_context)
torch.library.register_autograd(
    "sqish::sqish_backward", _double_backward, setup_context=_setup_backward_context
)


_IMPL = torch.library.Library("sqish", "IMPL")
# Looked up once: the in-place kernel below runs on every in-place call.
_SQISH_INPLACE = torch.ops.sqish.sqish_.default
_AFTER_AUTOGRAD = torch._C._after_autograd_keyset


# The in-place op overwrites the input that any backward would need, so it has no
# derivative: under autograd it refuses rather than record a wrong graph. Its
# kernels write through raw pointers, so this kernel also bumps x's version
# counter, on which autograd's checks of saved tensors rely.
def _sqish_inplace_autograd(keyset, x, alpha, beta, gamma):
    if torch.is_grad_enabled() and (x.requires_grad or alpha.requires_grad or beta.requires_grad
                                    or gamma.requires_grad):
        raise RuntimeError(
            "sqish_: the in-place Sqish overwrites its input, which the backward needs; x or a parameter "
            "requires grad here. Use sqish (out of place) for training, or call sqish_ under "
            "torch.no_grad() / torch.inference_mode()"
        )
    with torch._C._AutoDispatchBelowAutograd():
        _SQISH_INPLACE.redispatch(keyset & _AFTER_AUTOGRAD, x, alpha, beta, gamma)
    torch.autograd.graph.increment_version(x)
    return x


_IMPL.impl("sqish_", _sqish_inplace_autograd, "Autograd", with_keyset=True)


def refuse_cuda(reason: str) -> None:
    """Registers CUDA kernels that explain why the compiled ones are off."""
    for name in ("sqish", "sqish_", "sqish_backward"):
        def refuse(*args, _name=name):
            raise RuntimeError(f"sqish::{_name}: sqish_ext's CUDA kernels are off: {reason}")

        _IMPL.impl(name, refuse, "CUDA")


# ---- fake tensors (torch.compile, torch.export) ------------------------------------


@torch.library.register_fake("sqish::sqish")
def _sqish_fake(x, alpha, beta, gamma):
    return torch.empty_like(x)


@torch.library.register_fake("sqish::sqish_")
def _sqish_inplace_fake(x, alpha, beta, gamma):
    return x


@torch.library.register_fake("sqish::sqish_backward")
def _sqish_backward_fake(grad_output, x, alpha, beta, gamma, compute_param_grads):
    grad_x = torch.empty_like(x)
    if not compute_param_grads:
        return grad_x, None, None, None
    return grad_x, torch.empty_like(alpha), torch.empty_like(beta), torch.empty_like(gamma)


# ---- functional API -----------------------------------------------------------------


def as_parameter_tensor(name: str, value: Union[float, torch.Tensor], device: torch.device) -> torch.Tensor:
    """A Python number becomes a 0-dim float64 tensor on `device`; tensors pass through
    (the op checks their dtype, shape and device)."""
    if isinstance(value, torch.Tensor):
        return value
    # TorchScript skips this block (its annotations already restrict the types).
    if not torch.jit.is_scripting():
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"sqish: {name} must be a float or a tensor, got {type(value).__name__}")
    if name == "beta" and value < 0:
        raise ValueError(f"sqish: beta must be >= 0 (beta < 0 puts a pole on the real line), got {value}")
    return torch.tensor(float(value), dtype=torch.float64, device=device)


def _parameter_tensors(
    x: torch.Tensor,
    alpha: Union[float, torch.Tensor],
    beta: Union[float, torch.Tensor],
    gamma: Union[float, torch.Tensor],
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Checks x and turns the parameters into the tensors the ops take."""
    if not torch.jit.is_scripting():
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"sqish: x must be a tensor, got {type(x).__name__}")
    return (
        as_parameter_tensor("alpha", alpha, x.device),
        as_parameter_tensor("beta", beta, x.device),
        as_parameter_tensor("gamma", gamma, x.device),
    )


# The overloads themselves: calling a packet resolves the overload on every call.
_FORWARD_OPS = {"sqish": torch.ops.sqish.sqish.default, "sqish_": torch.ops.sqish.sqish_.default}


@torch.jit.unused
def _eager_call(name: str, x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor,
                gamma: torch.Tensor) -> torch.Tensor:
    """Calls torch.ops.sqish.<name>, raising the argument checks' own error types."""
    try:
        return _FORWARD_OPS[name](x, alpha, beta, gamma)
    except RuntimeError as error:
        raise _errors.typed(error) from None


def call_op(name: str, x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor,
            gamma: torch.Tensor) -> torch.Tensor:
    """torch.ops.sqish.<name>(x, alpha, beta, gamma) with typed errors in eager mode.
    Scripted code calls the op itself (TorchScript has no try)."""
    if torch.jit.is_scripting():
        if name == "sqish_":
            return torch.ops.sqish.sqish_(x, alpha, beta, gamma)
        return torch.ops.sqish.sqish(x, alpha, beta, gamma)
    return _eager_call(name, x, alpha, beta, gamma)


# The annotations make both functions scriptable (torch.jit.script compiles them
# when a scripted forward calls them); eager calls keep the checks above.
def sqish(
    x: torch.Tensor,
    alpha: Union[float, torch.Tensor] = DEFAULT_ALPHA,
    beta: Union[float, torch.Tensor] = DEFAULT_BETA,
    gamma: Union[float, torch.Tensor] = DEFAULT_GAMMA,
) -> torch.Tensor:
    """Sqish of x. alpha, beta, gamma are floats or float32/float64 tensors, each
    0-dim or of size x.size(1) (one value per channel); tensors are differentiable."""
    a, b, g = _parameter_tensors(x, alpha, beta, gamma)
    return call_op("sqish", x, a, b, g)


def sqish_(
    x: torch.Tensor,
    alpha: Union[float, torch.Tensor] = DEFAULT_ALPHA,
    beta: Union[float, torch.Tensor] = DEFAULT_BETA,
    gamma: Union[float, torch.Tensor] = DEFAULT_GAMMA,
) -> torch.Tensor:
    """In-place Sqish for inference: overwrites and returns x. Raises when autograd
    would need the overwritten input (use it under torch.no_grad() or inference_mode)."""
    a, b, g = _parameter_tensors(x, alpha, beta, gamma)
    return call_op("sqish_", x, a, b, g)
