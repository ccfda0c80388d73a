"""Kernel probe: the kernels every involution layer generated on its last forward pass.

An involution layer earns its keep by generating a *different* K×K kernel at every pixel of
every sample. It degenerates in three ways the losses do not show: kernels that stop varying
across positions (`spatial_var` → 0: the layer has become a plain depthwise conv) or across
samples (`sample_var` → 0: it ignores its input); kernels that concentrate on one tap
(`entropy` → 0, `near_zero` → 1: a shift, or saturation of the softmax); and kernel magnitudes
that grow without bound (`max_abs`, `span_norm`), which feeds the critic's Lipschitz budget or
the generator's activations. A forward hook on each layer's `kernel_tap` keeps the kernels of
its last pass with autograd on (no recomputation): in G the generator update's, in D the critic
pass of the generator update (fakes); the no-grad passes of other probes (FID, diversity) and of
the fakes the critic is trained on do not replace them. Cost: a few reductions over one kernel tensor per layer.
"""
from __future__ import annotations

import torch
from torch import nn

from probes.base import Probe, StepState, weight_of
from probes.layers import involution_layers
from probes.readings import KERNEL_PANELS, kernel_tag

HISTOGRAM_VALUES = 8192  # taps in the histogram, an even stride through the kernel tensor
NEAR_ZERO = 0.01       # a tap is near zero below this fraction of its kernel's largest |tap|


def kernel_stats(kernel: torch.Tensor) -> dict[str, float]:
    """Statistics of generated kernels (B, G, K, K, H, W); see the module docstring.

    entropy: entropy (nats) of each kernel's |taps| normalised to sum 1 over its K·K taps,
    averaged over samples, groups and positions; in [0, log K²], log K² for a uniform kernel.
    spatial_var / sample_var: variance of each tap across the H·W positions / across the B
    samples, averaged over everything else. near_zero: fraction of taps whose |h| is at most
    NEAR_ZERO × the largest |h| of the same kernel.
    """
    if kernel.dim() != 6:
        raise ValueError(f"kernel must be (B, G, K, K, H, W), got shape {tuple(kernel.shape)}")
    b, g, k, _, h, w = kernel.shape
    taps = kernel.float().reshape(b, g, k * k, h, w)
    mag = taps.abs()
    total = mag.sum(dim=2, keepdim=True)
    p = mag / total.clamp_min(1e-12)
    entropy = -(p * p.clamp_min(1e-12).log()).sum(dim=2)
    # an all-zero kernel has no tap distribution; it counts as entropy 0 (a dead kernel)
    entropy = torch.where(total.squeeze(2) > 0, entropy, torch.zeros_like(entropy))
    largest = mag.amax(dim=2, keepdim=True)
    return {
        "mean": taps.mean().item(),
        "std": taps.std().item() if taps.numel() > 1 else 0.0,
        "max_abs": mag.max().item(),
        "entropy": entropy.mean().item(),
        "spatial_var": taps.flatten(3).var(dim=3).mean().item() if h * w > 1 else 0.0,
        "sample_var": taps.var(dim=0).mean().item() if b > 1 else 0.0,
        "near_zero": (mag <= NEAR_ZERO * largest).float().mean().item(),
    }


class KernelProbe(Probe):
    """kernel/<layer>/{mean,std,max_abs,entropy,spatial_var,sample_var,near_zero,reduce_norm,
    span_norm} and histogram kernel/<layer>/taps for every involution layer of G (g.inv<i>)
    and D."""

    name = "kernels"
    panels = KERNEL_PANELS

    def __init__(self, every: int = 10):
        super().__init__(every)
        self.layers: list[tuple[str, nn.Module]] = []
        self.kernels: dict[str, torch.Tensor] = {}  # layer name -> its last kernels, detached
        self._hooks: list = []

    @classmethod
    def from_config(cls, config) -> "KernelProbe":
        return cls(every=config.probe_every or config.log_every)

    def attach(self, generator: nn.Module, critic: nn.Module) -> None:
        self.layers = [(name, module) for net, prefix in ((generator, "g"), (critic, "d"))
                       for name, module in involution_layers(net, prefix)]

        def keep(name):
            def hook(module, inputs, kernel):
                if torch.is_grad_enabled():
                    self.kernels[name] = kernel.detach()
            return hook

        self._hooks = [layer.kernel_tap.register_forward_hook(keep(name))
                       for name, layer in self.layers]

    def on_step(self, state: StepState) -> dict[str, float | torch.Tensor]:
        readings: dict[str, float | torch.Tensor] = {}
        for name, layer in self.layers:
            kernel = self.kernels.get(name)
            if kernel is None:
                continue
            for stat, value in kernel_stats(kernel).items():
                readings[kernel_tag(name, stat)] = value
            with torch.no_grad():
                readings[kernel_tag(name, "reduce_norm")] = weight_of(layer.reduce).norm().item()
                readings[kernel_tag(name, "span_norm")] = weight_of(layer.span).norm().item()
            taps = kernel.flatten()
            readings[kernel_tag(name, "taps")] = taps[::max(1, taps.numel() // HISTOGRAM_VALUES)]
        return readings

    def detach(self) -> None:
        for handle in self._hooks:
            handle.remove()
        self.layers, self.kernels, self._hooks = [], {}, []

