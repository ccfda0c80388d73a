"""The GAN objectives' maths: one class per loss, one per penalty (probes/objectives.py says
what each logs and how the detector judges it).

A loss turns the critic's scores into the critic's and the generator's losses; a penalty takes
∇D at its points (interpolates, real data, generated samples), each term scored in a critic
call of its own so its double backward runs over those B samples only. `Penalty.weight` is λ
for the gradient penalty and γ for R1/R2 (applied as γ/2, as StyleGAN and R3GAN write it);
a lazy penalty (`every` = k > 1) is taken on every k-th critic update and scaled by k
(StyleGAN2's lazy regularization), so its expected pull is the same.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from probes.objectives import PENALTIES, PenaltyTerm


class Loss(abc.ABC):
    """An adversarial loss: `critic(d_real, d_fake)` and `generator(d_fake, d_real)` from the
    critic's scores (B,) on a real and a generated batch. `needs_real` says whether the
    generator's loss reads D(real) (a loss of score differences)."""
    needs_real = False

    @abc.abstractmethod
    def critic(self, d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
        """The critic's loss."""

    @abc.abstractmethod
    def generator(self, d_fake: torch.Tensor, d_real: torch.Tensor | None = None) -> torch.Tensor:
        """The generator's loss."""


class Wasserstein(Loss):
    """E[D(fake)] − E[D(real)]; G: −E[D(fake)] (the seed's eq. 4 without its penalty)."""

    def critic(self, d_real, d_fake):
        return d_fake.mean() - d_real.mean()

    def generator(self, d_fake, d_real=None):
        return -d_fake.mean()


class Hinge(Loss):
    """E[relu(1 − D(real))] + E[relu(1 + D(fake))]; G: −E[D(fake)] (SNGAN, SAGAN, BigGAN)."""

    def critic(self, d_real, d_fake):
        return F.relu(1.0 - d_real).mean() + F.relu(1.0 + d_fake).mean()

    def generator(self, d_fake, d_real=None):
        return -d_fake.mean()


class NonSaturating(Loss):
    """E[softplus(−D(real))] + E[softplus(D(fake))]; G: E[softplus(−D(fake))] (StyleGAN)."""

    def critic(self, d_real, d_fake):
        return F.softplus(-d_real).mean() + F.softplus(d_fake).mean()

    def generator(self, d_fake, d_real=None):
        return F.softplus(-d_fake).mean()


class RelativisticPairing(Loss):
    """E[softplus(−(D(real) − D(fake)))]; G: E[softplus(−(D(fake) − D(real)))] (R3GAN)."""
    needs_real = True

    def critic(self, d_real, d_fake):
        return F.softplus(d_fake - d_real).mean()

    def generator(self, d_fake, d_real=None):
        return F.softplus(d_real - d_fake).mean()


LOSSES: dict[str, type[Loss]] = {"wgan": Wasserstein, "hinge": Hinge, "ns": NonSaturating,
                                 "rpgan": RelativisticPairing}


@dataclass
class PenaltyTerms:
    """What a penalty computed, per term: the points, ∇D there, the weight-free value."""
    points: dict[str, torch.Tensor]
    grads: dict[str, torch.Tensor]
    values: dict[str, torch.Tensor]


class Penalty:
    """A gradient penalty (`name` from probes.objectives.PENALTIES) with its weight and cadence."""

    def __init__(self, name: str, weight: float, every: int = 1):
        self.terms: tuple[PenaltyTerm, ...] = PENALTIES[name]
        self.weight, self.every = weight, every

    def due(self, critic_update: int) -> bool:
        """Whether critic update number `critic_update` (from 0) takes the penalty."""
        return bool(self.terms) and critic_update % self.every == 0

    def weight_of(self, term: PenaltyTerm) -> float:
        """A term's factor in the critic's loss: λ for the gradient penalty, γ/2 for R1, R2."""
        return self.weight if term.target is not None else self.weight / 2

    def compute(self, critic, real: torch.Tensor, fake: torch.Tensor,
                rng: torch.Generator) -> PenaltyTerms:
        """Every term at its points, each in a critic call of its own; with a positive weight
        the graph is kept for the critic's update. The gradient penalty draws its interpolation
        weights from `rng`."""
        create_graph = self.weight > 0
        terms = PenaltyTerms({}, {}, {})
        for term in self.terms:
            x = _points(term, real, fake, rng).requires_grad_(True)
            grad, = torch.autograd.grad(critic(x).sum(), x, create_graph=create_graph)
            if term.target is not None:  # pulled to the target norm
                value = ((grad.flatten(1).norm(dim=1) - term.target) ** 2).mean()
            else:  # ‖∇D‖² summed directly: the norm's own gradient is undefined at 0
                value = grad.flatten(1).square().sum(dim=1).mean()
            terms.points[term.name], terms.grads[term.name] = x, grad
            terms.values[term.name] = value
        return terms

    def loss(self, values: dict[str, torch.Tensor], lazy: bool = True) -> torch.Tensor | float:
        """The weighted sum of the terms' values: what a critic update adds (times k for a lazy
        penalty), or with lazy=False what the logged critic loss holds (so it does not jump on
        the steps a lazy penalty is taken)."""
        factor = self.every if lazy else 1
        total = 0.0
        for term in self.terms:
            weighted = self.weight_of(term) * factor * values[term.name]
            total = weighted if isinstance(total, float) else total + weighted
        return total


def _points(term: PenaltyTerm, real: torch.Tensor, fake: torch.Tensor,
            rng: torch.Generator) -> torch.Tensor:
    if term.name == "gp":
        # one mixing weight per sample, broadcast over its image or point dimensions
        eps = torch.rand(real.shape[0], *[1] * (real.ndim - 1), generator=rng,
                         device=real.device, dtype=real.dtype)
        return eps * real + (1 - eps) * fake
    return (real if term.name == "r1" else fake).detach().clone()
