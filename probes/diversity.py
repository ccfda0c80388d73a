"""Diversity probe: how different the generator's samples of a fixed noise batch are.

Mode collapse shows as samples that look alike whatever the noise: the mean pairwise distance
between samples falls (towards 0 for full collapse) and near-duplicates appear. Measuring on a
FIXED noise batch makes readings comparable across steps (only G changed), and the real
batch's own pairwise distance gives the scale to compare against.

Distances are RMS pixel distances, ‖x − y‖₂ / √(C·H·W), in the images' [−1, 1] units
(real MNIST digits: mean pairwise ≈ 0.6, nearest neighbour within 256 digits ≥ 0.15); a
sample is a near-duplicate when another sample of the batch is within DUP_RMS = 0.05 of it.

The samples are generated in eval mode under no_grad from the probe's own noise, drawn once
from a private torch.Generator: the global RNG and the training state are never touched (so
training is identical with or without the probe, and resume stays exact), and the kernel
probe, which keeps grad-enabled passes only, does not see them. Cost: one generator forward pass of
`samples` images and a samples² distance matrix, on a sparse cadence.
"""
from __future__ import annotations

import torch
from torch import nn

from probes.base import Probe, StepState, sampling
from probes.readings import (DIVERSITY_DUP_RATE, DIVERSITY_PAIRWISE, DIVERSITY_PAIRWISE_REAL,
                             DIVERSITY_PANELS)

DUP_RMS = 0.05


def pairwise_rms(images: torch.Tensor) -> torch.Tensor:
    """(N, N) RMS distances between the N images of a batch."""
    flat = images.detach().float().flatten(1)
    return torch.cdist(flat, flat) / flat.shape[1] ** 0.5


def diversity_stats(images: torch.Tensor, dup_rms: float = DUP_RMS) -> tuple[float, float]:
    """(mean pairwise RMS distance, fraction of images with another within dup_rms)."""
    n = images.shape[0]
    if n < 2:
        raise ValueError(f"diversity needs at least 2 images, got {n}")
    distances = pairwise_rms(images)
    mean = distances.sum() / (n * (n - 1))
    distances.fill_diagonal_(float("inf"))
    dup = (distances.amin(dim=1) <= dup_rms).float().mean()
    return mean.item(), dup.item()


class DiversityProbe(Probe):
    """diversity/pairwise, diversity/dup_rate (fixed-noise samples), diversity/pairwise_real."""

    name = "diversity"
    panels = DIVERSITY_PANELS

    def __init__(self, every: int = 100, samples: int = 64, seed: int = 0x5EED,
                 z_dim: int | None = None):
        super().__init__(every)
        if samples < 2:
            raise ValueError(f"DiversityProbe: samples={samples!r} must be >= 2")
        self.samples, self.seed, self.z_dim = samples, seed, z_dim
        self.noise: torch.Tensor | None = None
        self.generator: nn.Module | None = None

    @classmethod
    def from_config(cls, config) -> "DiversityProbe":
        return cls(every=config.diversity_every or 10 * config.log_every, z_dim=config.z_dim,
                   seed=config.seed + 0x5EED)

    def attach(self, generator: nn.Module, critic: nn.Module) -> None:
        z_dim = self.z_dim or getattr(generator, "z_dim", None)
        if not z_dim:
            raise ValueError("DiversityProbe: the generator has no z_dim attribute; pass "
                             "DiversityProbe(z_dim=...) for a generator taking (N, z_dim) noise")
        private = torch.Generator().manual_seed(self.seed)
        self.noise = torch.randn(self.samples, z_dim, generator=private)
        self.generator = generator

    def on_step(self, state: StepState) -> dict[str, float]:
        images = self.generate()
        pairwise, dup_rate = diversity_stats(images)
        readings = {DIVERSITY_PAIRWISE: pairwise, DIVERSITY_DUP_RATE: dup_rate}
        if state.real is not None and state.real.shape[0] >= 2:
            readings[DIVERSITY_PAIRWISE_REAL] = diversity_stats(state.real[:self.samples])[0]
        return readings

    def generate(self) -> torch.Tensor:
        """The fixed-noise samples of the current generator (eval mode, no_grad, state restored)."""
        device = next(self.generator.parameters()).device
        if self.noise.device != device:
            self.noise = self.noise.to(device)
        with sampling(self.generator) as generator:
            return generator(self.noise)

    def detach(self) -> None:
        self.generator = None
