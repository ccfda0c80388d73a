"""Spectra probe: the two largest singular values of every conv and linear weight of G and D.

BigGAN (Brock et al. 2019, §4.1) found that collapse at scale is preceded by the top singular
value σ0 of generator and critic weights growing sharply while σ1 does not: the weights become
rank-one dominated, one direction amplifies everything, and training explodes. σ0, σ1 and
σ0/σ1 per layer make that visible before the losses move.

A weight is read as the matrix a spectral-norm layer would see: Linear (out, in), Conv
(out, in·k·k), ConvTranspose (out, in·k·k) (its out channels are dim 1). For a spectral-norm
parametrized layer the probe reads the stored *original* weight: the effective one is that
divided by its σ0 estimate, so its σ0 is ≈ 1 by construction and says nothing, and reading it
in train mode would run an extra power-iteration step that changes training. Singular values
are exact (`torch.linalg.svdvals` on the CPU); with these layer sizes that costs a few ms per
network, so the probe runs on a sparse cadence.
"""
from __future__ import annotations

import torch
from torch import nn

from probes.base import Probe, StepState, weight_of
from probes.layers import named_layers
from probes.readings import SPECTRA_PANELS, spectra_tag


def weight_matrix(module: nn.Module) -> torch.Tensor | None:
    """The layer's weight as an (out, fan-in) matrix, or None for layers without one (norms)."""
    if not isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d,
                               nn.ConvTranspose2d, nn.ConvTranspose3d)):
        return None
    weight = weight_of(module).detach()
    if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        weight = weight.transpose(0, 1)
    return weight.reshape(weight.shape[0], -1)


def top_singular_values(matrix: torch.Tensor) -> tuple[float, float | None]:
    """(σ0, σ1) of a matrix; σ1 is None when the matrix has rank at most 1 by shape."""
    values = torch.linalg.svdvals(matrix.float().cpu())
    return values[0].item(), (values[1].item() if values.numel() > 1 else None)


class SpectraProbe(Probe):
    """spectra/<net>.<layer>/sigma0, /sigma1, /ratio (σ0/σ1) for every conv and linear layer."""

    name = "spectra"
    panels = SPECTRA_PANELS

    def __init__(self, every: int = 100):
        super().__init__(every)
        self.layers: list[tuple[str, nn.Module]] = []

    @classmethod
    def from_config(cls, config) -> "SpectraProbe":
        return cls(every=config.spectra_every or 10 * config.log_every)

    def attach(self, generator: nn.Module, critic: nn.Module) -> None:
        self.layers = [(name, module) for net, prefix in ((generator, "g"), (critic, "d"))
                       for name, module in named_layers(net, prefix)
                       if weight_matrix(module) is not None]

    def on_step(self, state: StepState) -> dict[str, float]:
        readings: dict[str, float] = {}
        for name, module in self.layers:
            sigma0, sigma1 = top_singular_values(weight_matrix(module))
            readings[spectra_tag(name, "sigma0")] = sigma0
            if sigma1 is not None:
                readings[spectra_tag(name, "sigma1")] = sigma1
                if sigma1 > 0:  # a rank-one weight has no finite ratio; sigma1 = 0 says it
                    readings[spectra_tag(name, "ratio")] = sigma0 / sigma1
        return readings

    def detach(self) -> None:
        self.layers = []
