"""Layer names: how probes, metrics, TensorBoard and `stabgan inspect` name a network's layers.

Names are `<prefix>.<module path>` (`g.body.1.0`); the i-th involution layer of a network, in
module order, and its sub-layers are `<prefix>.inv<i>` and `<prefix>.inv<i>.reduce`, so the
kernel, spectra and gradient tags of one involution layer share a name. Any nn.Module works.

An involution layer is recognised by what the kernel probe reads of it, not by its class (the
probes import nothing of the trainer): a `kernel_tap` submodule its generated kernels
(B, G, K, K, H, W) pass through, and the `reduce` and `span` layers that generate them, as
stabgan's `Involution2d` has.
"""
from __future__ import annotations

from typing import Iterator

from torch import nn
from torch.nn.utils import parametrize


def is_involution(module: nn.Module) -> bool:
    """Whether module is an involution layer (see the module docstring)."""
    return isinstance(getattr(module, "kernel_tap", None), nn.Module)


def layer_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The parameters of one layer: its own plus the originals of its parametrizations."""
    params = list(module.parameters(recurse=False))
    if parametrize.is_parametrized(module):
        params += [p.original for p in module.parametrizations.values()]
    return params


def named_modules(net: nn.Module, prefix: str) -> Iterator[tuple[str, str, nn.Module]]:
    """(module path, display name, module) for every named module but parametrization
    containers; the i-th involution layer and its sub-layers become `<prefix>.inv<i>[.sub]`."""
    renames: dict[str, str] = {}
    for path, module in net.named_modules():
        if is_involution(module):
            renames[path] = f"inv{len(renames)}"
    for path, module in net.named_modules():
        if ".parametrizations" in f".{path}":
            continue
        short = path
        for inv_path, inv_name in renames.items():
            if path == inv_path or path.startswith(inv_path + "."):
                short = inv_name + path[len(inv_path):]
                break
        yield path, f"{prefix}.{short}" if short else prefix, module


def named_layers(net: nn.Module, prefix: str) -> Iterator[tuple[str, nn.Module]]:
    """(short stable name, module) for every module owning parameters, in definition order.

    Spectral-norm parametrization containers are folded into the layer they belong to.
    """
    for _, name, module in named_modules(net, prefix):
        if layer_parameters(module):
            yield name, module


def involution_layers(net: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    """(`<prefix>.inv<i>`, layer) for every involution layer of net, in module order."""
    return [(name, m) for _, name, m in named_modules(net, prefix) if is_involution(m)]
