"""Overfit probe: does the critic score real images it never trained on like those it did?

A critic that memorises its training set (a small dataset, a long run) scores its training
images high and unseen real images like generated ones; its gradients then teach the generator
that training set rather than the data (Karras et al. 2020, "Training generative adversarial
networks with limited data"). Given real images kept out of training, every reading scores
three sets with the critic's raw output D(x): the held-out images, a fixed sample of as many
training images and as many generated ones (fixed noise), and logs their means and ADA's
validation heuristic

    r_v = (E[D(train)] − E[D(held out)]) / (E[D(train)] − E[D(generated)]):

about 0 while D scores unseen real images like its training images, towards 1 as it scores
them like generated ones (above 1: lower still). A ratio of two differences of the same
scores, it ignores their offset and scale, so it means the same under every loss (Wasserstein
scores, hinge, non-saturating and relativistic logits). A reading where D does not tell the
training images from the generated ones (their gap within GAP_SE standard errors) has no r_v:
the ratio would have no denominator.

Both networks run in eval mode under no_grad (batch statistics and spectral norm's power
iteration untouched) and the noise is drawn once from a private generator, so training is the
same with or without the probe. Cost: 3N critic and N generator forward passes per reading,
for N held-out images.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from probes.base import Probe, StepState, fixed_noise, sample_cadence, sampling
from probes.readings import (OVERFIT_D_FAKE, OVERFIT_D_HOLDOUT, OVERFIT_D_TRAIN, OVERFIT_PANELS,
                             OVERFIT_R_V)

GAP_SE = 2.0   # r_v needs E[D(train)] − E[D(generated)] beyond this many standard errors
CHUNK = 256    # images per forward pass
SEED_OFFSET = 0x0F17  # the generated images' noise: seed + this (apart from diversity's)


def overfit_readings(d_train: torch.Tensor, d_holdout: torch.Tensor,
                     d_fake: torch.Tensor) -> dict[str, float]:
    """The mean scores of the three sets and, when D tells the training images from the
    generated ones beyond its noise, r_v = (E[D_train] − E[D_holdout]) / (E[D_train] − E[D_fake])."""
    d_train, d_holdout, d_fake = (s.detach().double().flatten() for s in (d_train, d_holdout,
                                                                             d_fake))
    train, holdout, fake = (s.mean().item() for s in (d_train, d_holdout, d_fake))
    readings = {OVERFIT_D_TRAIN: train, OVERFIT_D_HOLDOUT: holdout, OVERFIT_D_FAKE: fake}
    error = math.sqrt(d_train.var().item() / len(d_train) + d_fake.var().item() / len(d_fake))
    if train - fake > GAP_SE * error:
        readings[OVERFIT_R_V] = (train - holdout) / (train - fake)
    return readings


class OverfitProbe(Probe):
    """overfit/r_v, overfit/d_train, overfit/d_holdout, overfit/d_fake.

    held_out: real images the loop never trains on, (N, ...); training: a fixed sample of the
    images it trains on (N of them when it has as many). `build_probes` makes it from a
    setting `held_out` = (held-out images, training images) and leaves it out without one.
    """

    name = "overfit"
    panels = OVERFIT_PANELS

    def __init__(self, held_out: torch.Tensor, training: torch.Tensor, every: int = 100,
                 seed: int = SEED_OFFSET, z_dim: int | None = None):
        super().__init__(every)
        if len(held_out) < 2 or len(training) < 2 or held_out.shape[1:] != training.shape[1:]:
            raise ValueError(f"OverfitProbe: held_out {tuple(held_out.shape)} and training "
                             f"{tuple(training.shape)} must each hold 2 or more items of the "
                             f"same shape")
        self.held_out, self.training = held_out.detach(), training.detach()
        self.seed, self.z_dim = seed, z_dim
        self.noise: torch.Tensor | None = None
        self.generator: nn.Module | None = None
        self.critic: nn.Module | None = None

    @classmethod
    def enabled(cls, config) -> bool:
        return getattr(config, "held_out", None) is not None

    @classmethod
    def from_config(cls, config) -> "OverfitProbe":
        if not cls.enabled(config):
            raise ValueError("probe 'overfit' scores real images kept out of training; give "
                             "--holdout N (a loop of your own: held_out=(held-out images, "
                             "training images))")
        held_out, training = config.held_out
        return cls(held_out, training, every=config.overfit_every or sample_cadence(config),
                   seed=config.seed + SEED_OFFSET, z_dim=config.z_dim)

    def attach(self, generator: nn.Module, critic: nn.Module) -> None:
        self.noise = fixed_noise(self, generator, len(self.held_out), self.seed, self.z_dim)
        device = next(critic.parameters()).device
        self.held_out, self.training = self.held_out.to(device), self.training.to(device)
        self.generator, self.critic = generator, critic

    def on_step(self, state: StepState) -> dict[str, float]:
        with sampling(self.generator) as generator, sampling(self.critic) as critic:
            fake = torch.cat([generator(z) for z in self.noise.split(CHUNK)])
            d_train, d_holdout, d_fake = (
                torch.cat([critic(x).flatten() for x in images.split(CHUNK)])
                for images in (self.training, self.held_out, fake))
        return overfit_readings(d_train, d_holdout, d_fake)

    def detach(self) -> None:
        self.generator = self.critic = None
