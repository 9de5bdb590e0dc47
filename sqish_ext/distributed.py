"""DTensor sharding rules for the Sqish ops.

Sqish is elementwise and its parameters index dim 1 (the channels), so a DTensor x
is computed where it lies, with no communication: replicated, sharded along any
dimension with the parameters replicated, or sharded along the channels with the
per-channel parameters sharded alike (0-dim ones replicated). In the backward, a
parameter's gradient sums over the dimensions x is sharded along, so it comes out
Partial (a sum over ranks still to be taken) where its parameter is replicated, and
Shard(0) where its parameter is sharded. The backward is linear in grad_output, so a
Partial grad_output with x replicated gives Partial gradients too. A Partial x has
no rule: DTensor sums it first, since Sqish of a sum is not the sum of Sqish.

Importing torch.distributed.tensor takes about 0.7 s, thirty times as long as
importing sqish_ext, so the rules are not registered at `import sqish_ext`: they
are registered as soon as torch.distributed.tensor is imported, before sqish_ext or
after it (a DTensor cannot exist before then).
"""
import importlib.machinery
import sys
import warnings

import torch

_DTENSOR_MODULE = "torch.distributed.tensor"


def _x_placements(x):
    from torch.distributed.tensor import Replicate, Shard

    return [Replicate(), *(Shard(dim) for dim in range(x.ndim))]


def _parameter_placement(x_placement, param):
    """Where a parameter must lie for x's placement: None for a number (.float)."""
    from torch.distributed.tensor import Replicate, Shard

    if isinstance(param, (int, float)):
        return None
    return Shard(0) if param.ndim == 1 and x_placement == Shard(1) else Replicate()


def _gradient_placement(x_placement, param_placement):
    """Where a parameter's gradient lies: a sum over a shard of x is Partial."""
    from torch.distributed.tensor import Partial, Replicate

    if x_placement == Replicate() or param_placement != Replicate():
        return param_placement
    return Partial()


def _forward_strategies(x, alpha, beta, gamma):
    """sqish and sqish_, both overloads: the output lies as x does."""
    return [([placement], [placement, *(_parameter_placement(placement, p) for p in (alpha, beta, gamma))])
            for placement in _x_placements(x)]


def _backward_placements(x, params, with_param_grads):
    """(outputs, inputs) of sqish_backward's overloads, inputs without the flag."""
    from torch.distributed.tensor import Partial, Replicate

    strategies = []
    for placement in _x_placements(x):
        param_placements = [_parameter_placement(placement, p) for p in params]
        grads = [_gradient_placement(placement, p) for p in param_placements] if with_param_grads else []
        strategies.append(([placement, *grads], [placement, placement, *param_placements]))
    replicated = [_parameter_placement(Replicate(), p) for p in params]
    outputs = 1 + (len(params) if with_param_grads else 0)
    strategies.append(([Partial()] * outputs, [Partial(), Replicate(), *replicated]))
    return strategies


def _backward_strategies(grad_output, x, alpha, beta, gamma, compute_param_grads):
    # The gradients' placements must not depend on compute_param_grads: DTensor
    # caches a rule's answer by the tensor arguments' placements alone (the flag is
    # not part of the key), and a gradient not computed comes back None anyway.
    return [(outputs, [*inputs, None]) for outputs, inputs in _backward_placements(x, (alpha, beta, gamma), True)]


def _float_backward_strategies(grad_output, x, alpha, beta, gamma):
    return _backward_placements(x, (alpha, beta, gamma), False)


def _register():
    """Registers the rules with DTensor."""
    from torch.distributed.tensor.experimental import register_sharding

    ops = torch.ops.sqish
    register_sharding([ops.sqish.default, ops.sqish.float, ops.sqish_.default, ops.sqish_.float])(
        _forward_strategies
    )
    register_sharding(ops.sqish_backward.default)(_backward_strategies)
    register_sharding(ops.sqish_backward.float)(_float_backward_strategies)


def _register_with_warning():
    # Runs inside the import of torch.distributed.tensor: a failure here must not
    # fail that import, which programs make that never call Sqish on a DTensor.
    try:
        _register()
    except Exception as error:  # noqa: BLE001
        warnings.warn(f"sqish_ext: the Sqish ops' DTensor sharding rules failed to register ({error!r}); "
                      f"the ops will refuse DTensor arguments", RuntimeWarning, stacklevel=2)


class _RegisterOnImport:
    """A finder first on sys.meta_path that answers only for torch.distributed.tensor,
    with the spec the file system gives, its loader wrapped to register the rules
    once the module has run; it leaves sys.meta_path then."""

    def find_spec(self, name, path=None, target=None):
        if name != _DTENSOR_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _RegisterAfterExec(spec.loader, self)
        return spec


class _RegisterAfterExec:
    """A module's loader that registers the rules once the module has run; the
    module itself gets its own loader back."""

    def __init__(self, loader, finder):
        self._loader, self._finder = loader, finder

    def __getattr__(self, name):  # create_module, get_source, ...: the loader's own
        return getattr(self._loader, name)

    def exec_module(self, module):
        module.__loader__ = module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        if self._finder in sys.meta_path:
            sys.meta_path.remove(self._finder)
        _register_with_warning()


def _register_when_dtensor_loads():
    """Registers the rules now if torch.distributed.tensor is loaded, else when it is."""
    if not torch.distributed.is_available():
        return
    if _DTENSOR_MODULE in sys.modules:
        _register_with_warning()
    else:
        sys.meta_path.insert(0, _RegisterOnImport())


_register_when_dtensor_loads()
