"""Swap the activation modules of an existing model, e.g. every ReLU of a torchvision network for Sqish."""

import copy
from collections.abc import Callable

import torch
from torch import nn


def replace_activations(
    model: nn.Module,
    old: type[nn.Module] | tuple[type[nn.Module], ...] = (nn.ReLU,),
    new: nn.Module | Callable[..., nn.Module] | None = None,
    example_input: torch.Tensor | tuple | None = None,
) -> int:
    """Replace, in place, every submodule of ``model`` that is an instance of ``old``; return how many.

    Modules are found at any depth, including inside ``nn.Sequential``, ``nn.ModuleList`` and
    ``nn.ModuleDict``; ``inplace=True`` ReLUs are replaced like any other. Activations called as
    functions (``F.relu`` inside a ``forward``) are not modules and cannot be replaced.

    ``new`` says what each replaced module becomes:

    - ``None``: a fixed ``sqish_ext.Sqish()`` with its default parameters.
    - an ``nn.Module``: every replaced module gets its own deep copy, so learnable parameters are
      never shared between sites.
    - a callable returning a module: called once per replaced module as ``new()``, or, when
      ``example_input`` is given, as ``new(num_parameters=C)`` with ``C`` the channel count that site
      sees, following ``nn.PReLU``. A learnable per-channel Sqish at every site is therefore
      ``new=functools.partial(Sqish, learnable=True), example_input=x``.

    The channel count is ``x.size(1)`` of the input each site receives while ``model`` runs once on
    ``example_input`` (a tensor, or a tuple of positional arguments), recorded by forward pre-hooks.
    That pass runs under ``torch.no_grad()`` in eval mode, so batch-norm statistics are untouched, and
    every module's train/eval mode is restored afterwards. A ``ValueError`` naming the site is raised
    when a site does not run on the example, gets fewer than two dimensions, or is one module called
    with different channel counts (a per-channel module cannot serve them all).

    A module that sits at several places in the model, or is called several times (torchvision's
    ResNet blocks call their one ``relu`` twice), is one site: it is replaced by one new module
    everywhere, so sharing is kept. The new modules are created on the CPU: replace before moving
    the model to its device, or move it again afterwards.
    """
    if isinstance(model, old):
        raise ValueError(f"the model itself is a {type(model).__name__}; there is no parent to put the replacement in")
    if new is None:
        # Imported here because sqish_ext/__init__.py imports this module.
        from sqish_ext import Sqish

        new = Sqish()
    if isinstance(new, nn.Module) and example_input is not None:
        raise ValueError("example_input only serves a factory `new`; a module `new` is copied as it is")

    # Iterate over each parent's _modules rather than named_children(): the latter hides the second
    # occurrence of a module registered twice under one parent, which would then stay unreplaced.
    placements = [
        (parent, key, child)
        for parent in model.modules()
        for key, child in parent._modules.items()
        if isinstance(child, old)
    ]
    sites = list(dict.fromkeys(child for _, _, child in placements))
    if not sites:
        return 0

    if example_input is None:
        channels = dict.fromkeys(sites)
    else:
        channels = _channel_counts(model, sites, example_input)
    replacements = {site: _build(new, channels[site]) for site in sites}
    for parent, key, child in placements:
        setattr(parent, key, replacements[child])
    return len(sites)


def _build(new: nn.Module | Callable[..., nn.Module], channels: int | None) -> nn.Module:
    if isinstance(new, nn.Module):
        return copy.deepcopy(new)
    return new() if channels is None else new(num_parameters=channels)


def _channel_counts(model: nn.Module, sites: list[nn.Module], example_input) -> dict[nn.Module, int]:
    """Run ``model`` once on ``example_input`` and return ``x.size(1)`` as seen by each site."""
    seen: dict[nn.Module, set[int | None]] = {site: set() for site in sites}

    def record(module, args):
        # A pre-hook sees the input before an in-place activation overwrites it.
        x = args[0] if args else None
        seen[module].add(x.size(1) if isinstance(x, torch.Tensor) and x.dim() >= 2 else None)

    handles = [site.register_forward_pre_hook(record) for site in sites]
    modes = {m: m.training for m in model.modules()}
    args = example_input if isinstance(example_input, tuple) else (example_input,)
    try:
        model.eval()
        with torch.no_grad():
            model(*args)
    finally:
        for handle in handles:
            handle.remove()
        for m, training in modes.items():
            m.training = training

    names = {m: name for name, m in model.named_modules()}
    counts = {}
    for site, found in seen.items():
        where = f"{names[site]!r} ({type(site).__name__})"
        if not found:
            raise ValueError(f"cannot find the channel count of {where}: it did not run on example_input")
        if None in found:
            raise ValueError(f"cannot find the channel count of {where}: its input is not a tensor of 2 or more dims")
        if len(found) > 1:
            raise ValueError(
                f"{where} is called with {sorted(found)} channels; one per-channel module cannot serve "
                "them all, so give each call its own module"
            )
        counts[site] = found.pop()
    return counts
