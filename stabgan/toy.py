"""2-D Gaussian mixtures with exact ground truth: the data, the mode counting, the coverage
probe and the scatter plot of samples.

`ring8` (8 Gaussians on a circle of radius 2, std 0.02) and `grid25` (5×5 Gaussians at
−4, −2, 0, 2, 4 on both axes, std 0.05) are the mixtures of the unrolled-GAN, VEEGAN and PacGAN
benchmarks. Each is shipped as code: a fixed-seed sample of 10,000 points, every mode holding
the same number, with the mode index as label.

The counting follows VEEGAN (Srivastava et al. 2017), as PacGAN (Lin et al. 2018) does, on
N = 2,500 samples: a generated point belongs to its nearest mode and is *high quality* when it
lies within 3 std of that mode. A mode is *covered* when it holds at least 10% of a uniform
share of high-quality points, ceil(0.1·N/K): 32 for ring8, 10 for grid25. That is the share
stabgan.fid asks of a class on images, so `coverage/modes` means the same to the detector on
both kinds of data; the papers' own threshold, a single high-quality point, counts a mode that
a diffuse generator grazes by luck (`min_count=1` gives it). Beside the count, the fraction of
high-quality samples and the KL (nats) of the high-quality points' mode histogram from
uniform: 0 when every mode holds the same share, log K when one mode holds them all (and when
no point is high quality).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.data import TensorDataset

from probes.base import Probe, StepState, fixed_noise, sampling
from probes.readings import COVERAGE_KL, COVERAGE_MODES, QUALITY, Panel
from stabgan.config import dataset_info
from stabgan.coverage import covered_threshold, kl_from_uniform

DATA_POINTS = 10_000    # points in a mixture's dataset
DATA_SEED = 0           # every run trains on the same points, whatever its --seed
HIGH_QUALITY_STDS = 3.0  # VEEGAN's and PacGAN's radius for a high-quality sample, in std
COVERAGE_SAMPLES = 2_500  # generated points per coverage reading, as VEEGAN and PacGAN count
COVERAGE_EVERY = 50      # steps between coverage readings when --fid-every is 0
SCATTER_POINTS = 1_024   # fixed-noise samples in a point dataset's samples/step_NNNNNN.png

COVERAGE_HIGH_QUALITY = "coverage/high_quality"
COVERAGE_PANELS = tuple(Panel(tag, QUALITY, (tag,)) for tag in (
    COVERAGE_KL, COVERAGE_MODES, COVERAGE_HIGH_QUALITY))


def _ring(modes: int, radius: float) -> torch.Tensor:
    angles = torch.arange(modes, dtype=torch.float64) * (2 * math.pi / modes)
    return radius * torch.stack([angles.cos(), angles.sin()], dim=1)


def _grid(values: tuple[float, ...]) -> torch.Tensor:
    axis = torch.tensor(values, dtype=torch.float64)
    return torch.cartesian_prod(axis, axis)


# name -> (means (K, 2) float64, std)
MIXTURES = {"ring8": (_ring(8, 2.0), 0.02),
            "grid25": (_grid((-4.0, -2.0, 0.0, 2.0, 4.0)), 0.05)}


def mixture(spec: str) -> tuple[torch.Tensor, float]:
    """(means (K, 2) float64, std) of a point dataset; KeyError for any other spec."""
    means, std = MIXTURES[spec]
    return means.clone(), std


def mixture_means(spec: str) -> torch.Tensor | None:
    """The mode means of a point dataset, None for an image dataset."""
    return mixture(spec)[0] if dataset_info(spec).points else None


def mixture_dataset(spec: str, n: int = DATA_POINTS, seed: int = DATA_SEED) -> TensorDataset:
    """n points (float32, (n, 2)) of the mixture with their mode index as label, modes in turn
    so each holds n / K of them (±1)."""
    means, std = mixture(spec)
    labels = torch.arange(n) % len(means)
    noise = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return TensorDataset((means[labels] + std * noise).float(), labels)


def nearest_modes(points: torch.Tensor, means: torch.Tensor,
                  std: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(each point's nearest mode (N,), whether it lies within 3 std of it (N,) bool); a
    non-finite point is never high quality."""
    distances = torch.cdist(points.detach().double().cpu(), means.double())
    nearest, index = distances.min(dim=1)
    return index, nearest <= HIGH_QUALITY_STDS * std


def mode_counts(points: torch.Tensor, means: torch.Tensor, std: float) -> torch.Tensor:
    """High-quality points per mode, (K,) int64."""
    index, good = nearest_modes(points, means, std)
    return torch.bincount(index[good], minlength=len(means))


def coverage(points: torch.Tensor, means: torch.Tensor, std: float,
             min_count: int | None = None) -> dict[str, float]:
    """coverage/modes (modes with >= min_count high-quality points; by default
    `covered_threshold(N, K)`), coverage/high_quality (their fraction of all points) and coverage/kl
    (of their mode histogram from uniform)."""
    if points.ndim != 2 or points.shape[1] != 2 or not len(points):
        raise ValueError(f"points must have shape (N >= 1, 2), got {tuple(points.shape)}")
    counts = mode_counts(points, means, std)
    if min_count is None:
        min_count = covered_threshold(len(points), len(means))
    return {COVERAGE_MODES: float((counts >= min_count).sum()),
            COVERAGE_HIGH_QUALITY: float(counts.sum()) / len(points),
            COVERAGE_KL: kl_from_uniform(counts)}


class CoverageProbe(Probe):
    """coverage/modes, coverage/kl, coverage/high_quality of a 2-D mixture, counted exactly on
    `samples` points from the probe's own fixed noise (eval mode, no_grad, global RNG untouched).
    Cost: one generator pass over the samples and an (N, K) distance matrix."""

    name = "coverage"
    panels = COVERAGE_PANELS

    def __init__(self, dataset: str, every: int = COVERAGE_EVERY,
                 samples: int = COVERAGE_SAMPLES, min_count: int | None = None,
                 seed: int = 0, z_dim: int | None = None):
        super().__init__(every)
        if samples < 1 or (min_count is not None and min_count < 1):
            raise ValueError(f"CoverageProbe: samples={samples!r} and min_count={min_count!r} "
                             f"must be >= 1")
        self.means, self.std = mixture(dataset)
        self.samples, self.min_count, self.seed, self.z_dim = samples, min_count, seed, z_dim
        self.noise: torch.Tensor | None = None
        self.generator: nn.Module | None = None

    @classmethod
    def enabled(cls, config) -> bool:
        return dataset_info(config.dataset).points

    @classmethod
    def from_config(cls, config) -> "CoverageProbe":
        return cls(config.dataset, every=config.fid_every or COVERAGE_EVERY, z_dim=config.z_dim,
                   seed=config.seed)

    def attach(self, generator: nn.Module, critic: nn.Module) -> None:
        self.noise = fixed_noise(self, generator, self.samples, self.seed, self.z_dim)
        self.generator = generator

    def on_step(self, state: StepState) -> dict[str, float]:
        with sampling(self.generator) as generator:
            points = generator(self.noise)
        return coverage(points, self.means, self.std, self.min_count)

    def detach(self) -> None:
        self.generator = None


def scatter_image(points: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """A scatter plot of points (N, 2) over the mixture's means (red crosses), as a (3, H, W)
    float image in [0, 1]; axes fixed around the means so steps compare, points beyond them
    drawn on the border."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    reach = float(means.abs().max()) + 1.0
    shown = points.detach().float().cpu().clamp(-reach, reach).numpy()
    figure = Figure(figsize=(4, 4), dpi=100)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_axes((0.08, 0.08, 0.88, 0.88))
    axes.scatter(shown[:, 0], shown[:, 1], s=3, alpha=0.5, color="tab:blue", linewidths=0)
    axes.scatter(means[:, 0], means[:, 1], s=30, marker="x", color="tab:red", zorder=3)
    axes.set(xlim=(-reach, reach), ylim=(-reach, reach), aspect="equal")
    axes.tick_params(labelsize=7)
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3]
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div(255)
