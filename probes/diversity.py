"""Diversity probe: how different the generator's samples of a fixed noise batch are.

Mode collapse shows as samples that look alike whatever the noise: the mean pairwise distance
between samples falls (towards 0 for full collapse) and near-duplicates appear. Measuring on a
FIXED noise batch makes readings comparable across steps (only G changed), and the real
batch's own pairwise distance gives the scale to compare against.

Distances are RMS pixel distances, ‖x − y‖₂ / √(C·H·W), in the images' [−1, 1] units
(real MNIST digits: mean pairwise ≈ 0.6, nearest neighbour within 64 digits ≈ 0.42 in the
median). A sample is a near-duplicate when another sample of the batch is closer than
DUP_FRACTION = 0.12 of the real batch's median nearest-neighbour distance (≈ 0.05 on MNIST):
a fixed distance would call every good sample of a tight 2-D mode a duplicate of its
neighbours. Without a real batch (a loop that passes none) the fixed DUP_RMS = 0.05 applies.

`diversity/coverage` asks the other way round how much of the data the samples reach: the
fraction of real images (the step's real batch, or the probe's fixed `reference` images)
that have a sample inside their k-nearest-neighbour ball among the real ones (k = COVERAGE_K;
the "coverage" of Naeem et al. 2020, "Reliable fidelity and diversity metrics for generative
models"). Real data scores about 1 − 2^−k against itself, whatever its scale or dimension: a
generator stuck on 2 of 8 modes scores about 2/8, one that never learnt the data near 0. It
needs no classifier and no labels, so a run that never covers the data shows on any dataset;
pairwise distance alone cannot tell two far-apart modes from the whole data. The balls are
only as tight as the real images are many: among 64 images of data with 1,000 modes (Stacked
MNIST) each ball spans other modes, and samples of a few dozen modes reach most of them, so such
data needs more of both (`samples`, and a `reference` of as many real images when the batch is
smaller). A real batch holding several sets of `samples` images gives a reading of each
(up to COVERAGE_DRAWS, each against as many fixed-noise samples of their own), and the reading
is their mean: samples of 4 of 8 Gaussians read 0.34-0.67 against 40 batches of one set of 64
(std 0.075), across the detector's warning level 0.5, and 0.44-0.62 as the mean of 4 (0.037);
more real images in one set would shrink the balls and change what the reading means.

The samples are generated in eval mode under no_grad from the probe's own noise, drawn once
from a private torch.Generator: the global RNG and the training state are never touched (so
training is identical with or without the probe, and resume stays exact), and the kernel
probe, which keeps grad-enabled passes only, does not see them. Cost: one generator forward pass of
`samples` images and a samples² distance matrix, on a sparse cadence.
"""
from __future__ import annotations

import torch
from torch import nn

from probes.base import Probe, StepState, fixed_noise, sample_cadence, sampling
from probes.readings import (COVERAGE_K, DIVERSITY_COVERAGE, DIVERSITY_DUP_RATE,
                             DIVERSITY_PAIRWISE, DIVERSITY_PAIRWISE_REAL, DIVERSITY_PANELS)

DUP_RMS = 0.05
DUP_FRACTION = 0.12  # of the real batch's median nearest-neighbour distance
SAMPLES = 64  # fixed-noise samples a reading generates, unless told otherwise
COVERAGE_DRAWS = 4  # at most this many disjoint sets of real images a coverage reading averages


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


def duplicate_distance(real: torch.Tensor) -> float:
    """The near-duplicate distance for samples of data like `real` (2 or more images):
    DUP_FRACTION of the real images' median nearest-neighbour RMS distance."""
    distances = pairwise_rms(real)
    distances.fill_diagonal_(float("inf"))
    return DUP_FRACTION * distances.amin(dim=1).median().item()


def sample_coverage(real: torch.Tensor, samples: torch.Tensor, k: int = COVERAGE_K) -> float:
    """The fraction of real images with a sample within the distance of their k-th nearest real
    neighbour (Naeem et al. 2020); needs more than k real images."""
    if real.shape[0] <= k:
        raise ValueError(f"coverage needs more than k={k} real images, got {real.shape[0]}")
    real_flat = real.detach().float().flatten(1)
    within_real = torch.cdist(real_flat, real_flat)
    radius = within_real.kthvalue(k + 1, dim=1).values  # the 0 to itself comes first
    nearest = torch.cdist(real_flat, samples.detach().float().flatten(1).to(real_flat.device))
    return (nearest.amin(dim=1) <= radius).float().mean().item()


class DiversityProbe(Probe):
    """diversity/pairwise, diversity/dup_rate (fixed-noise samples), diversity/pairwise_real,
    diversity/coverage (the real images' share the samples reach).

    The real images are the step's batch, or `reference` when given: a fixed set, e.g. for more
    real images than a batch holds. Pairwise distance and duplicates read their first `samples`;
    coverage every set of `samples` they hold, up to COVERAGE_DRAWS (the module's docstring).
    """

    name = "diversity"
    panels = DIVERSITY_PANELS

    def __init__(self, every: int = 100, samples: int = SAMPLES, seed: int = 0x5EED,
                 z_dim: int | None = None, reference: torch.Tensor | None = None):
        super().__init__(every)
        if samples < 2:
            raise ValueError(f"DiversityProbe: samples={samples!r} must be >= 2")
        if reference is not None and len(reference) <= COVERAGE_K:
            raise ValueError(f"DiversityProbe: reference of {len(reference)} real images; "
                             f"coverage needs more than k={COVERAGE_K}")
        self.samples, self.seed, self.z_dim = samples, seed, z_dim
        self.reference = reference.detach() if reference is not None else None
        self.noise: torch.Tensor | None = None
        self.draw_noise: torch.Tensor | None = None  # the further coverage draws' samples
        self.generator: nn.Module | None = None

    @classmethod
    def from_config(cls, config) -> "DiversityProbe":
        return cls(every=config.diversity_every or sample_cadence(config), z_dim=config.z_dim,
                   seed=config.seed + 0x5EED, samples=config.diversity_samples or SAMPLES,
                   reference=getattr(config, "diversity_reference", None))

    def attach(self, generator: nn.Module, critic: nn.Module) -> None:
        self.noise = fixed_noise(self, generator, self.samples, self.seed, self.z_dim)
        self.draw_noise = fixed_noise(self, generator, (COVERAGE_DRAWS - 1) * self.samples,
                                      self.seed + 1, self.z_dim)
        self.generator = generator
        if self.reference is not None:
            self.reference = self.reference.to(next(generator.parameters()).device)

    def on_step(self, state: StepState) -> dict[str, float]:
        images = self.generate()
        every_real = self.reference if self.reference is not None else state.real
        real = every_real[:self.samples] if every_real is not None else None
        has_real = real is not None and real.shape[0] >= 2
        dup = duplicate_distance(real) if has_real else DUP_RMS
        pairwise, dup_rate = diversity_stats(images, dup)
        readings = {DIVERSITY_PAIRWISE: pairwise, DIVERSITY_DUP_RATE: dup_rate}
        if has_real:
            readings[DIVERSITY_PAIRWISE_REAL] = diversity_stats(real)[0]
        if real is not None and real.shape[0] > COVERAGE_K:
            readings[DIVERSITY_COVERAGE] = self.coverage(every_real, images)
        return readings

    def coverage(self, real: torch.Tensor, images: torch.Tensor) -> float:
        """diversity/coverage of the fixed-noise `images` and, when `real` holds more sets of
        `samples` images, of further fixed-noise sets against theirs: the mean."""
        n = self.samples
        draws = min(COVERAGE_DRAWS, len(real) // n)
        if draws <= 1:
            return sample_coverage(real[:n], images)
        more = self.generate(self.draw_noise[:(draws - 1) * n])
        return sum(sample_coverage(real[i * n:(i + 1) * n], samples)
                   for i, samples in enumerate([images, *more.split(n)])) / draws

    def generate(self, noise: torch.Tensor | None = None) -> torch.Tensor:
        """The current generator's samples of `noise` (default: the probe's fixed noise), in
        eval mode under no_grad, its state restored."""
        device = next(self.generator.parameters()).device
        if self.noise.device != device:
            self.noise, self.draw_noise = self.noise.to(device), self.draw_noise.to(device)
        with sampling(self.generator) as generator:
            return generator(self.noise if noise is None else noise.to(device))

    def detach(self) -> None:
        self.generator = None
